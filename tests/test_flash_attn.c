/* test_flash_attn.c - the tiled attention kernels against the naive one (slm_attention) and a
 * plain double-precision softmax(QK^T/sqrt(d))V over the same cached keys and values.
 *
 * Tolerance (TOL): max |x - ref| over an output tensor <= 1e-5 * max |ref|. Both F32 and F16
 * caches are
 * compared with the double reference computed from the values actually cached (F16 decoded
 * exactly), so both must agree to about 1e-5; the naive kernel is held to the same bound.
 * Shapes: head_dim 32/64/128 (and odd sizes for the row kernel), GQA ratios 1/3/4, query
 * counts and start positions that are not multiples of the tiles, KV block sizes 1/5/16,
 * block tables shuffled over the pool, forked sequences sharing blocks, decode split across
 * 1..4 threads for lengths 1..2000. Every variant this CPU runs (scalar, AVX2, AVX-512) runs;
 * the AVX2 and AVX-512 row kernels are also compared with the scalar twin directly. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/threadpool.h"
#include "kernels/attention.h"
#include "kernels/flash_attn.h"
#include "runtime/kvcache.h"
#include "test.h"

#define TOL 1e-5

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd_u(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float rnd_f(void) { return (float)rnd_u() / 2147483648.0f - 1.0f; } /* [-1, 1) */

/* Shuffle the free list so that sequences get scattered, non-contiguous blocks. */
static void shuffle_pool(slm_kv *kv) {
    for (int i = kv->n_free - 1; i > 0; i--) {
        int j = (int)(rnd_u() % (uint32_t)(i + 1));
        int32_t t = kv->free_list[i];
        kv->free_list[i] = kv->free_list[j];
        kv->free_list[j] = t;
    }
}

/* Random keys/values for positions [from, to) in every layer; `spread` scales keys so that
 * softmax is peaked (large) or flat (small). */
static void fill(slm_kv *kv, slm_seq *s, int from, int to, float spread) {
    float *k = malloc((size_t)kv->kv_dim * sizeof(float)), *v = malloc((size_t)kv->kv_dim * sizeof(float));
    for (int p = from; p < to; p++)
        for (int l = 0; l < kv->n_layers; l++) {
            for (int d = 0; d < kv->kv_dim; d++) k[d] = spread * rnd_f(), v[d] = rnd_f();
            slm_kv_store(kv, s, l, p, k, v);
        }
    free(k);
    free(v);
}

static double elem(const slm_kv *kv, const void *row, int d) {
    if (kv->type == SLM_KV_F32) return ((const float *)row)[d];
    return slm_f16_to_f32(((const uint16_t *)row)[d]);
}

/* softmax(q K^T / sqrt(hd)) V in double, every query t seeing keys 0..pos0+t. */
static void ref_attention(const slm_kv *kv, const slm_seq *s, int layer, const float *q, int n_tok, int pos0, int nh,
                          int nkv, int hd, double *out) {
    const int group = nh / nkv, n_k = pos0 + n_tok;
    double *sc = malloc((size_t)n_k * sizeof(double));
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < nh; h++) {
            const float *qh = q + ((size_t)t * nh + h) * hd;
            const int g = h / group, last = pos0 + t;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= last; j++) {
                const void *kr = (const char *)slm_kv_key(kv, s, layer, j) + (size_t)g * hd * kv->elem_size;
                double a = 0;
                for (int d = 0; d < hd; d++) a += (double)qh[d] * elem(kv, kr, d);
                sc[j] = a / sqrt((double)hd);
                if (sc[j] > mx) mx = sc[j];
            }
            for (int j = 0; j <= last; j++) sum += (sc[j] = exp(sc[j] - mx));
            double *o = out + ((size_t)t * nh + h) * hd;
            for (int d = 0; d < hd; d++) o[d] = 0;
            for (int j = 0; j <= last; j++) {
                const void *vr = (const char *)slm_kv_value(kv, s, layer, j) + (size_t)g * hd * kv->elem_size;
                for (int d = 0; d < hd; d++) o[d] += sc[j] / sum * elem(kv, vr, d);
            }
        }
    free(sc);
}

/* max |x - ref| / max |ref| */
static double rel_err(const float *x, const double *ref, size_t n) {
    double mx = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
        double e = fabs((double)x[i] - ref[i]);
        if (!(e <= err)) err = e; /* NaN propagates */
    }
    return err / (mx > 0 ? mx : 1);
}
static double rel_err_f(const float *x, const float *y, size_t n) {
    double mx = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(y[i]) > mx) mx = fabs(y[i]);
        double e = fabs((double)x[i] - y[i]);
        if (!(e <= err)) err = e;
    }
    return err / (mx > 0 ? mx : 1);
}

/* variant 0 scalar, 1 AVX2, 2 AVX-512 (row kernel; the rest of the path is AVX2) */
static int n_variants;
static int variants[3];
static const char *const variant_names[3] = {"scalar", "avx2", "avx512"};

/* Prefill with items run in a scrambled order and split in uneven ranges. */
static void run_prefill(slm_fa_args *a, float *scratch) {
    const long n = slm_fa_prefill_items(a);
    long cut = n > 1 ? 1 + (long)(rnd_u() % (uint32_t)(n - 1)) : n;
    slm_fa_prefill(a, cut, n, scratch);
    slm_fa_prefill(a, 0, cut, scratch);
}

/* One prefill case: tiled (every variant) and naive vs the double reference. */
static void prefill_case(slm_kv *kv, const slm_seq *s, int layer, int n_tok, int pos0, int nh, int nkv, int hd,
                         const char *what) {
    const size_t qd = (size_t)nh * hd, n_out = (size_t)n_tok * qd;
    float *q = malloc(n_out * sizeof(float)), *out = malloc(n_out * sizeof(float)), *naive = malloc(n_out * sizeof(float));
    double *ref = malloc(n_out * sizeof(double));
    float *scratch = malloc(slm_fa_scratch_floats(nh, nkv, hd) * sizeof(float));
    float *scores = malloc((size_t)(pos0 + n_tok) * sizeof(float));
    for (size_t i = 0; i < n_out; i++) q[i] = 2.0f * rnd_f();
    ref_attention(kv, s, layer, q, n_tok, pos0, nh, nkv, hd, ref);
    for (int vi = 0; vi < n_variants; vi++) {
        slm_fa_args a = {kv, s, layer, q, n_tok, pos0, nh, nkv, hd, out, variants[vi] >= 1, variants[vi] == 2};
        for (size_t i = 0; i < n_out; i++) out[i] = NAN;
        run_prefill(&a, scratch);
        double e = rel_err(out, ref, n_out);
        CHECK(e <= TOL, "%s: tiled %s vs double: rel err %.3g (hd %d, heads %d/%d, n_tok %d, pos0 %d, block %d, %s)",
              what, variant_names[variants[vi]], e, hd, nh, nkv, n_tok, pos0, kv->block_size,
              kv->type == SLM_KV_F16 ? "f16" : "f32");
        slm_attention(kv, s, layer, q, n_tok, pos0, nh, nkv, hd, naive, scores, 0, (long)n_tok * nh, variants[vi] >= 1);
        e = rel_err_f(out, naive, n_out);
        CHECK(e <= TOL, "%s: tiled vs naive %s: rel err %.3g (hd %d, heads %d/%d, n_tok %d, pos0 %d, block %d)", what,
              variant_names[variants[vi]], e, hd, nh, nkv, n_tok, pos0, kv->block_size);
    }
    free(q), free(out), free(naive), free(ref), free(scratch), free(scores);
}

static void test_prefill_shapes(void) {
    static const int hds[] = {32, 64, 128}, ratios[] = {1, 3, 4}, blocks[] = {1, 5, 16};
    static const int toks[][2] = {{1, 0}, {7, 5}, {33, 0}, {70, 37}, {32, 64}, {5, 130}, {45, 100}, {1, 200}, {100, 3}};
    int k = 0;
    for (int ti = 0; ti < 2; ti++)
        for (int hi = 0; hi < 3; hi++)
            for (int ri = 0; ri < 3; ri++)
                for (int bi = 0; bi < 3; bi++) {
                    const int hd = hds[hi], nkv = ratios[ri] == 1 ? 2 : 3, nh = nkv * ratios[ri];
                    slm_kv *kv;
                    if (slm_kv_create(ti ? SLM_KV_F16 : SLM_KV_F32, 2, nkv * hd, blocks[bi], 600, &kv)) {
                        CHECK(0, "create: %s", slm_last_error());
                        continue;
                    }
                    shuffle_pool(kv);
                    for (int rep = 0; rep < 2; rep++, k++) {
                        const int n_tok = toks[k % 9][0], pos0 = toks[k % 9][1];
                        slm_seq s = {0};
                        CHECK(slm_seq_reserve(kv, &s, pos0 + n_tok) == SLM_OK, "reserve");
                        fill(kv, &s, 0, pos0 + n_tok, rep ? 4.0f : 1.0f);
                        s.n_tokens = pos0 + n_tok;
                        prefill_case(kv, &s, 1, n_tok, pos0, nh, nkv, hd, "shapes");
                        slm_seq_release(kv, &s);
                    }
                    slm_kv_free(kv);
                }
}

/* A forked sequence shares a prefix with its parent and diverges after it; each sees its own
 * keys, and the parent's results do not change when the child writes. */
static void test_forked(void) {
    for (int ti = 0; ti < 2; ti++) {
        const int nh = 9, nkv = 3, hd = 64, bs = 5;
        slm_kv *kv;
        CHECK(slm_kv_create(ti ? SLM_KV_F16 : SLM_KV_F32, 2, nkv * hd, bs, 1000, &kv) == SLM_OK, "create");
        shuffle_pool(kv);
        slm_seq parent = {0}, child = {0};
        CHECK(slm_seq_reserve(kv, &parent, 150) == SLM_OK, "reserve");
        fill(kv, &parent, 0, 150, 2.0f);
        parent.n_tokens = 150;
        CHECK(slm_seq_fork(kv, &parent, &child) == SLM_OK, "fork");
        slm_seq_truncate(kv, &child, 93); /* mid-block: the child's block 18 stays shared */
        CHECK(slm_seq_reserve(kv, &child, 93 + 61) == SLM_OK, "child grows");
        fill(kv, &child, 93, 154, 2.0f);
        child.n_tokens = 154;
        int shared = 0;
        for (int b = 0; b < 18; b++) shared += child.blocks[b] == parent.blocks[b];
        CHECK(shared == 18 && child.blocks[18] != parent.blocks[18], "prefix blocks shared, the diverging one copied");
        prefill_case(kv, &child, 0, 40, 114, nh, nkv, hd, "fork child");
        prefill_case(kv, &child, 1, 154, 0, nh, nkv, hd, "fork child full");
        prefill_case(kv, &parent, 1, 150, 0, nh, nkv, hd, "fork parent");
        slm_seq_release(kv, &child);
        slm_seq_release(kv, &parent);
        CHECK(kv->n_free == kv->n_blocks, "all blocks back");
        slm_kv_free(kv);
    }
}

typedef struct {
    slm_fa_args *a;
    int n_keys;
    float *scratch, *parts;
    size_t scratch_n, part_n;
} decode_job;

static void decode_task(void *arg, int ith, int nth) {
    decode_job *j = arg;
    long lo, hi;
    slm_pool_split(j->n_keys, ith, nth, SLM_FA_KTILE, &lo, &hi);
    slm_fa_decode_part(j->a, (int)lo, (int)hi, j->scratch + (size_t)ith * j->scratch_n, j->parts + (size_t)ith * j->part_n);
}

/* Split-key decode over 1..4 threads vs the naive kernel and the double reference. */
static void test_decode(void) {
    const int nh = 9, nkv = 3, hd = 64, maxlen = 2000;
    static const slm_kv_type types[] = {SLM_KV_F32, SLM_KV_F16};
    slm_pool *pools[4];
    for (int i = 0; i < 4; i++) CHECK(slm_pool_create(i + 1, &pools[i]) == SLM_OK, "pool %d", i + 1);
    const size_t qd = (size_t)nh * hd, sn = slm_fa_scratch_floats(nh, nkv, hd), pn = slm_fa_part_floats(nh, hd);
    float *scratch = malloc(4 * sn * sizeof(float)), *parts = malloc(4 * pn * sizeof(float));
    float *q = malloc(qd * sizeof(float)), *out = malloc(qd * sizeof(float)), *naive = malloc(qd * sizeof(float));
    float *scores = malloc((size_t)maxlen * sizeof(float));
    double *ref = malloc(qd * sizeof(double));
    for (int ti = 0; ti < 2; ti++) {
        slm_kv *kv;
        CHECK(slm_kv_create(types[ti], 1, nkv * hd, 16, maxlen, &kv) == SLM_OK, "create");
        shuffle_pool(kv);
        slm_seq s = {0};
        CHECK(slm_seq_reserve(kv, &s, maxlen) == SLM_OK, "reserve");
        fill(kv, &s, 0, maxlen, 3.0f);
        s.n_tokens = maxlen;
        double worst = 0, worst_naive = 0;
        int cases = 0, bad = 0;
        for (int len = 1; len <= maxlen; len += len < 80 ? 1 : len < 300 ? 7 : 61) {
            for (int lens2 = 0; lens2 < 2; lens2++) {
                /* also the exact lengths around tile and split boundaries */
                int L = len;
                if (lens2) {
                    static const int edge[] = {63, 64, 65, 255, 256, 257, 1023, 1024, 1025, 2000};
                    if (len > 10) break;
                    L = edge[len - 1];
                }
                for (size_t i = 0; i < qd; i++) q[i] = 2.0f * rnd_f();
                ref_attention(kv, &s, 0, q, 1, L - 1, nh, nkv, hd, ref);
                slm_attention(kv, &s, 0, q, 1, L - 1, nh, nkv, hd, naive, scores, 0, nh, false);
                double en = rel_err(naive, ref, qd);
                if (en > worst_naive) worst_naive = en;
                for (int vi = 0; vi < n_variants; vi++) {
                    slm_fa_args a = {kv, &s, 0, q, 1, L - 1, nh, nkv, hd, out, variants[vi] >= 1, variants[vi] == 2};
                    const int nth = 1 + (cases + vi) % 4;
                    decode_job j = {&a, L, scratch, parts, sn, pn};
                    slm_pool_run(pools[nth - 1], decode_task, &j);
                    slm_fa_decode_merge(parts, nth, nh, hd, out);
                    double e = rel_err(out, ref, qd), e2 = rel_err_f(out, naive, qd);
                    if (e > worst) worst = e;
                    if (!(e <= TOL && e2 <= TOL)) {
                        bad++;
                        fprintf(stderr, "decode len %d threads %d %s: err %.3g vs double, %.3g vs naive\n", L, nth,
                                variant_names[variants[vi]], e, e2);
                    }
                    cases++;
                }
            }
        }
        CHECK(bad == 0, "decode %s: %d of %d cases within %.0e (worst %.3g; naive vs double %.3g)",
              ti ? "f16" : "f32", cases - bad, cases, TOL, worst, worst_naive);
        slm_seq_release(kv, &s);
        slm_kv_free(kv);
    }
    for (int i = 0; i < 4; i++) slm_pool_free(pools[i]);
    free(scratch), free(parts), free(q), free(out), free(naive), free(scores), free(ref);
}

/* Empty parts merge to nothing; a single part merges to itself normalized. */
static void test_merge(void) {
    const int nh = 2, hd = 3;
    float parts[3 * 2 * 5];
    for (int i = 0; i < 3 * 2 * 5; i++) parts[i] = 0;
    for (int p = 0; p < 3; p++)
        for (int h = 0; h < nh; h++) parts[p * 10 + h * 5 + 3] = -INFINITY;
    /* part 1, head 0: m = 0.5, l = 2, o = (2, 4, 6); part 2, head 0: m = 1.5, l = 1, o = (1, 1, 1) */
    float *a = parts + 10, *b = parts + 20;
    a[0] = 2, a[1] = 4, a[2] = 6, a[3] = 0.5f, a[4] = 2;
    b[0] = 1, b[1] = 1, b[2] = 1, b[3] = 1.5f, b[4] = 1;
    float out[6];
    slm_fa_decode_merge(parts, 3, nh, hd, out);
    const double c = exp(-1.0), den = c * 2 + 1;
    CHECK(fabs(out[0] - (c * 2 + 1) / den) < 1e-6 && fabs(out[2] - (c * 6 + 1) / den) < 1e-6, "merge rescales parts");
    CHECK(out[3] == 0 && out[4] == 0 && out[5] == 0, "a head with no keys gives zeros");
}

/* The AVX2 / AVX-512 row kernels against the scalar twin, odd head sizes and tails included
 * (m, l within 1e-5 relative; o within 1e-5 (max |o| + l), l bounding the size of the terms
 * summed into o, which may cancel), from a fresh state (m = -inf) and a running one; exp. */
static double max_abs(const float *x, int n) {
    double m = 0;
    for (int i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}
static double max_abs_diff(const float *x, const float *y, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        const double e = fabs((double)x[i] - y[i]);
        if (!(e <= m)) m = e; /* NaN propagates */
    }
    return m;
}

static void test_row_kernels(void) {
#if defined(__x86_64__)
    if (n_variants < 2) return;
    static const int hds[] = {1, 8, 15, 16, 20, 32, 36, 48, 64, 72, 80, 100, 128};
    for (int vi = 1; vi < n_variants; vi++) {
        int bad = 0, cases = 0;
        for (int hi = 0; hi < 13; hi++)
            for (int n = 1; n <= 70; n += (n < 20 ? 1 : 3))
                for (int fresh = 0; fresh < 2; fresh++, cases++) {
                    const int hd = hds[hi];
                    float q[128], K[70 * 128], V[70 * 128], s[70], o1[128], o2[128];
                    for (int d = 0; d < hd; d++) q[d] = rnd_f(), o1[d] = o2[d] = fresh ? 0 : rnd_f();
                    for (int i = 0; i < n * hd; i++) K[i] = 3 * rnd_f(), V[i] = rnd_f();
                    float m1 = fresh ? -INFINITY : 0.3f, m2 = m1, l1 = fresh ? 0 : 1.5f, l2 = l1;
                    slm_fa_row_ref(q, K, V, n, hd, s, &m1, &l1, o1);
                    if (variants[vi] == 2)
                        slm_fa_row_avx512(q, K, V, n, hd, s, &m2, &l2, o2);
                    else
                        slm_fa_row_avx2(q, K, V, n, hd, s, &m2, &l2, o2);
                    bad += !(fabsf(m1 - m2) <= 1e-5f * (1 + fabsf(m1)) && fabsf(l1 - l2) <= 1e-5f * l1);
                    bad += !(max_abs_diff(o2, o1, hd) <= 1e-5 * (max_abs(o1, hd) + l1));
                }
        CHECK(bad == 0, "%s row kernel matches the scalar twin (%d mismatches in %d cases)", variant_names[variants[vi]],
              bad, cases);
    }
    double worst = 0;
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = -87.0f + 87.0f * (float)i / 999.0f;
    float y[1000];
    memcpy(y, x, sizeof y);
    slm_fa_exp_avx2(y, 997); /* a tail too */
    for (int i = 0; i < 997; i++) {
        double e = fabs(y[i] - exp((double)x[i])) / exp((double)x[i]);
        if (e > worst) worst = e;
    }
    CHECK(worst < 5e-7, "avx2 exp relative error %.3g", worst);
    CHECK(y[997] == x[997], "exp leaves elements past n alone");
    float lo[1] = {-1000.0f};
    slm_fa_exp_avx2(lo, 1);
    CHECK(lo[0] >= 0 && lo[0] < 1e-37f, "exp of a very negative number is about 0");
#endif
}

int main(void) {
    variants[n_variants++] = 0;
#if defined(__x86_64__)
    if (slm_attention_simd_available()) variants[n_variants++] = 1;
    if (slm_attention_simd_available() && slm_fa_avx512_available()) variants[n_variants++] = 2;
#endif
    printf("variants:");
    for (int i = 0; i < n_variants; i++) printf(" %s", variant_names[variants[i]]);
    printf("\n");
    test_row_kernels();
    test_merge();
    test_prefill_shapes();
    test_forked();
    test_decode();
    return test_summary("test_flash_attn");
}
