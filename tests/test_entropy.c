/* test_entropy.c - the own entropy coder (compress/entropy.h): round trips on random, skewed,
 * constant, empty and single-symbol data and on real f16 / q4_1 / q8_0 / q4_k / f32 block
 * bytes from the library's quantizers; coded sizes against the order-0 entropy of each
 * stream; layouts against the dtype table; and thousands of corrupted coded streams decoded
 * into exact-size buffers (run under ASan: no crash, no out-of-bounds access). The packed
 * container (compress/pack.h) around a small GGUF file: every codec restores the exact bytes,
 * and no damaged or truncated container ever unpacks to bytes other than the original. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>
#include <unistd.h>

#include "compress/entropy.h"
#include "compress/pack.h"
#include "core/dtype.h"
#include "core/gguf_write.h"
#include "core/gq.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static double gauss(void) {
    double u = (rnd() + 1.0) / 4294967297.0, v = rnd() / 4294967296.0;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Encodes, checks the bound, decodes into an exact-size buffer, compares. Returns the coded
 * size (or SIZE_MAX on failure); *coded_out (optional) receives a malloc'd copy. */
static size_t round_trip(const char *what, const slm_ent_layout *l, const uint8_t *src, size_t n,
                         uint8_t **coded_out) {
    size_t cap = slm_ent_bound(n), len = 0;
    uint8_t *dst = malloc(cap), *back = malloc(n ? n : 1);
    slm_status s = slm_ent_encode(l, src, n, dst, cap, &len);
    CHECK(s == SLM_OK, "%s: encode failed: %s", what, slm_last_error());
    CHECK(len <= cap, "%s: coded %zu bytes above the bound %zu", what, len, cap);
    s = s ? s : slm_ent_decode(dst, len, back, n);
    CHECK(s == SLM_OK, "%s: decode failed: %s", what, slm_last_error());
    CHECK(s || n == 0 || memcmp(back, src, n) == 0, "%s: round trip differs", what);
    /* deterministic: coding twice gives the same bytes */
    size_t len2 = 0;
    uint8_t *dst2 = malloc(cap);
    CHECK(slm_ent_encode(l, src, n, dst2, cap, &len2) == SLM_OK && len2 == len && memcmp(dst, dst2, len) == 0,
          "%s: second encode differs", what);
    free(dst2);
    free(back);
    if (coded_out) *coded_out = dst;
    else free(dst);
    return s ? SIZE_MAX : len;
}

/* Order-0 entropy of a buffer in bytes. */
static double entropy_bytes(const uint8_t *p, size_t n) {
    double cnt[256] = {0}, h = 0;
    for (size_t i = 0; i < n; i++) cnt[p[i]]++;
    for (int s = 0; s < 256; s++)
        if (cnt[s]) h -= cnt[s] * log2(cnt[s] / (double)n);
    return h / 8;
}

static void test_plain(void) {
    const slm_ent_layout none = {0};
    size_t sizes[] = {0, 1, 2, 3, 16, 17, 100, 4096, 100000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        uint8_t *a = malloc(n ? n : 1);
        char what[64];
        /* uniform random: stored, never larger than the bound */
        for (size_t i = 0; i < n; i++) a[i] = (uint8_t)rnd();
        snprintf(what, sizeof what, "random n=%zu", n);
        size_t len = round_trip(what, &none, a, n, NULL);
        CHECK(len <= n + 8, "%s: %zu coded bytes", what, len);
        /* constant */
        memset(a, 0xab, n);
        snprintf(what, sizeof what, "constant n=%zu", n);
        len = round_trip(what, &none, a, n, NULL);
        CHECK(n < 2 || len <= 8, "%s: %zu coded bytes", what, len);
        /* skewed: geometric symbols; coded size close to the order-0 entropy */
        for (size_t i = 0; i < n; i++) {
            int s = 0;
            while (s < 255 && (rnd() & 3) == 0) s++;
            a[i] = (uint8_t)(s * 7);
        }
        snprintf(what, sizeof what, "skewed n=%zu", n);
        len = round_trip(what, &none, a, n, NULL);
        double h = entropy_bytes(a, n);
        if (n >= 4096)
            CHECK(len >= h && len <= h * 1.01 + 64, "%s: %zu coded bytes, entropy %.0f", what, len, h);
        /* two symbols, very unequal */
        for (size_t i = 0; i < n; i++) a[i] = (rnd() % 1000) ? 5 : 200;
        snprintf(what, sizeof what, "two symbols n=%zu", n);
        len = round_trip(what, &none, a, n, NULL);
        h = entropy_bytes(a, n);
        if (n >= 4096)
            CHECK(len <= h * 1.05 + 32, "%s: %zu coded bytes, entropy %.0f", what, len, h);
        /* every byte value once plus one dominant symbol (exercises the frequency floor) */
        for (size_t i = 0; i < n; i++) a[i] = i < 256 ? (uint8_t)i : 0;
        snprintf(what, sizeof what, "all symbols n=%zu", n);
        round_trip(what, &none, a, n, NULL);
        free(a);
    }
}

/* Real block bytes: n_rows rows of `cols` gaussian weights quantized to dtype t. */
static uint8_t *quantized(uint32_t t, int64_t cols, int64_t rows, size_t *n) {
    const slm_dtype_traits *tr = slm_dtype_get(t);
    size_t rb = 0;
    if (!tr || !tr->from_float || !slm_row_bytes(t, cols, &rb)) return NULL;
    float *x = malloc((size_t)cols * sizeof *x);
    uint8_t *q = malloc(rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) x[i] = (float)(gauss() * 0.02);
        tr->from_float(x, q + rb * (size_t)r, cols);
    }
    free(x);
    *n = rb * (size_t)rows;
    return q;
}

static void test_blocks(void) {
    const uint32_t types[] = {SLM_DT_F32, SLM_DT_F16, SLM_DT_BF16, SLM_DT_Q8_0, SLM_DT_Q4_0, SLM_DT_Q4_1,
                              SLM_DT_Q5_0, SLM_DT_Q5_1, SLM_DT_Q2_K, SLM_DT_Q3_K, SLM_DT_Q4_K, SLM_DT_Q5_K,
                              SLM_DT_Q6_K};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        uint32_t t = types[k];
        slm_ent_layout l = slm_ent_layout_for(t, 512);
        const slm_dtype_traits *tr = slm_dtype_get(t);
        CHECK(tr && l.block_bytes == tr->block_bytes, "%s: layout block %u, dtype table %zu", slm_dtype_name(t),
              l.block_bytes, tr ? tr->block_bytes : 0);
        size_t n = 0;
        uint8_t *q = quantized(t, 512, 64, &n);
        if (!q) continue; /* no reference quantizer: layout checked above */
        char what[64];
        snprintf(what, sizeof what, "%s blocks", slm_dtype_name(t));
        slm_ent_layout none = {0};
        size_t with = round_trip(what, &l, q, n, NULL);
        snprintf(what, sizeof what, "%s blocks, no layout", slm_dtype_name(t));
        size_t without = round_trip(what, &none, q, n, NULL);
        /* the split never costs more than its extra tables and helps the float types */
        CHECK(with <= n, "%s: %zu coded of %zu", slm_dtype_name(t), with, n);
        if (t == SLM_DT_F16 || t == SLM_DT_F32 || t == SLM_DT_Q8_0 || t == SLM_DT_Q4_1)
            CHECK(with < without, "%s: split layout %zu bytes, plain %zu", slm_dtype_name(t), with, without);
        /* a tail that is not a whole block */
        snprintf(what, sizeof what, "%s blocks + tail", slm_dtype_name(t));
        round_trip(what, &l, q, n - 3, NULL);
        free(q);
    }
    /* group formats: a layout only when the row is whole groups */
    int g = slm_gq_type(4, 128, false);
    if (g >= 0) {
        slm_ent_layout l = slm_ent_layout_for((uint32_t)g, 512);
        CHECK(l.block_bytes == 2 + 64, "q4g128 layout block %u", l.block_bytes);
        l = slm_ent_layout_for((uint32_t)g, 576);
        CHECK(l.block_bytes == 0, "q4g128 with 576-element rows: no layout");
        size_t n = 0;
        uint8_t *q = quantized((uint32_t)g, 576, 16, &n);
        if (q) round_trip("q4g128 rows of 576", &l, q, n, NULL);
        free(q);
    }
}

static void test_bad_layouts(void) {
    uint8_t src[64] = {0}, dst[1024];
    size_t len;
    slm_ent_layout l = {.block_bytes = 4, .n_fields = 1, .fields = {{3, 0}}}; /* does not tile */
    CHECK(slm_ent_encode(&l, src, 64, dst, sizeof dst, &len) == SLM_ERR_ARG, "fields not tiling the block");
    l = (slm_ent_layout){.block_bytes = 2000, .n_fields = 1, .fields = {{2000, 0}}};
    CHECK(slm_ent_encode(&l, src, 64, dst, sizeof dst, &len) == SLM_ERR_ARG, "block too large");
    l = (slm_ent_layout){.block_bytes = 100, .n_fields = 1, .fields = {{100, 1}}}; /* 100 streams */
    CHECK(slm_ent_encode(&l, src, 64, dst, sizeof dst, &len) == SLM_ERR_ARG, "too many streams");
    CHECK(slm_ent_encode(NULL, src, 64, dst, 10, &len) == SLM_ERR_ARG, "capacity below the bound");
    /* decoding asks for a different size than was coded */
    slm_ent_layout f16 = slm_ent_layout_for(SLM_DT_F16, 32);
    for (int i = 0; i < 64; i++) src[i] = (uint8_t)(i % 5);
    CHECK(slm_ent_encode(&f16, src, 64, dst, sizeof dst, &len) == SLM_OK, "encode");
    uint8_t *out = malloc(65);
    CHECK(slm_ent_decode(dst, len, out, 65) != SLM_OK, "decoding 65 bytes of a 64-byte stream fails");
    CHECK(slm_ent_decode(dst, len, out, 63) != SLM_OK, "decoding 63 bytes of a 64-byte stream fails");
    CHECK(slm_ent_decode(dst, len - 1, out, 64) != SLM_OK, "truncated by one byte fails");
    CHECK(slm_ent_decode(dst, 0, out, 64) != SLM_OK, "empty input fails");
    free(out);
}

/* Mutated coded streams: flipped bytes, truncation, garbage. Decoding must return (an error,
 * or bytes that differ and that a checksum would catch) and never touch memory outside the
 * exact-size output buffer. */
static void test_mutations(void) {
    size_t n = 0;
    uint8_t *q = quantized(SLM_DT_Q4_1, 256, 8, &n);
    uint8_t *skew = malloc(3000);
    for (int i = 0; i < 3000; i++) skew[i] = (uint8_t)(rnd() % 7 == 0 ? rnd() : 3);
    struct {
        const uint8_t *p;
        size_t n;
        slm_ent_layout l;
    } inputs[] = {{q, n, slm_ent_layout_for(SLM_DT_Q4_1, 256)}, {skew, 3000, {0}}};
    int errors = 0, wrong = 0, same = 0;
    for (size_t k = 0; k < 2; k++) {
        uint8_t *coded = NULL;
        size_t len = round_trip("mutation source", &inputs[k].l, inputs[k].p, inputs[k].n, &coded);
        if (len == SIZE_MAX) {
            free(coded);
            continue;
        }
        uint8_t *m = malloc(len + 16), *out = malloc(inputs[k].n);
        for (int it = 0; it < 2500; it++) {
            memcpy(m, coded, len);
            size_t ml = len;
            int kind = it % 5;
            if (kind <= 2) { /* 1-3 random byte changes */
                for (int j = 0; j <= kind; j++) m[rnd() % len] ^= (uint8_t)(1 + rnd() % 255);
            } else if (kind == 3) { /* truncation */
                ml = rnd() % len;
            } else { /* a run of garbage, possibly extending the input */
                size_t at = rnd() % len, r = 1 + rnd() % 16;
                for (size_t j = 0; j < r; j++) m[at + j < len + 16 ? at + j : len] = (uint8_t)rnd();
                if (at + r > len) ml = at + r;
            }
            slm_status s = slm_ent_decode(m, ml, out, inputs[k].n);
            if (s) errors++;
            else if (memcmp(out, inputs[k].p, inputs[k].n)) wrong++;
            else same++;
        }
        free(m);
        free(out);
        free(coded);
    }
    CHECK(errors > 2500, "most mutations are detected by the decoder (%d errors, %d wrong, %d same)", errors, wrong,
          same);
    printf("mutations: %d rejected, %d decoded to other bytes, %d harmless\n", errors, wrong, same);
    free(q);
    free(skew);
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(len > 0 ? (size_t)len : 1);
    *n = b && len > 0 ? fread(b, 1, (size_t)len, f) : 0;
    fclose(f);
    return b;
}

static void write_all(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(b, 1, n, f);
    fclose(f);
}

/* A small GGUF (q4_1, f16 and an f32 vector whose size leaves padding after it), packed with
 * every codec; then single-byte damage anywhere and truncation at every length class. */
static void test_container(void) {
    char dir[] = "/tmp/test_entropy.XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    char model[64], packed[64], back[64];
    snprintf(model, sizeof model, "%s/m.gguf", dir);
    snprintf(packed, sizeof packed, "%s/m.slmp", dir);
    snprintf(back, sizeof back, "%s/back.gguf", dir);
    size_t nq = 0, nh = 0;
    uint8_t *q = quantized(SLM_DT_Q4_1, 256, 8, &nq), *h = quantized(SLM_DT_F16, 64, 4, &nh);
    float v[10];
    for (int i = 0; i < 10; i++) v[i] = (float)i * 0.5f;
    slm_gguf_writer *w = NULL;
    int64_t neq[2] = {256, 8}, neh[2] = {64, 4}, nev[1] = {10};
    slm_status s = slm_gguf_writer_create(&w);
    s = s ? s : slm_gguf_writer_set_str(w, "general.name", "tiny");
    s = s ? s : slm_gguf_writer_add_tensor(w, "a.weight", 2, neq, SLM_DT_Q4_1, q, nq);
    s = s ? s : slm_gguf_writer_add_tensor(w, "b.norm", 1, nev, SLM_DT_F32, v, sizeof v);
    s = s ? s : slm_gguf_writer_add_tensor(w, "c.weight", 2, neh, SLM_DT_F16, h, nh);
    s = s ? s : slm_gguf_writer_write(w, model);
    slm_gguf_writer_free(w);
    CHECK(s == SLM_OK, "writing the small model: %s", slm_last_error());
    size_t n_orig = 0;
    uint8_t *orig = read_all(model, &n_orig);
    slm_gguf *g = NULL;
    CHECK(slm_gguf_open(model, &g) == SLM_OK, "open: %s", slm_last_error());
    const int codecs[] = {SLM_PACK_RAW, SLM_PACK_ZSTD, SLM_PACK_OWN, SLM_PACK_AUTO};
    for (size_t c = 0; g && c < 4; c++) {
        slm_pack_opts o = {.codec = codecs[c], .level = 3};
        slm_pack_seg_info *info = NULL;
        size_t n_info = 0;
        s = slm_pack_write(g, packed, &o, &info, &n_info);
        CHECK(s == SLM_OK, "pack %s: %s", slm_pack_codec_name(codecs[c]), slm_last_error());
        CHECK(n_info == 4, "header + 3 tensor segments, got %zu", n_info);
        uint64_t sum = 0;
        for (size_t i = 0; i < n_info; i++) sum += info[i].raw;
        CHECK(sum == n_orig, "segments cover the file: %llu of %zu", (unsigned long long)sum, n_orig);
        free(info);
        CHECK(slm_pack_is_packed_file(packed) && !slm_pack_is_packed_file(model), "magic detection");
        void *buf = NULL;
        size_t n = 0;
        s = slm_pack_unpack_memory(packed, &buf, &n);
        CHECK(s == SLM_OK && n == n_orig && memcmp(buf, orig, n) == 0, "%s: unpack to memory",
              slm_pack_codec_name(codecs[c]));
        slm_pack_release(buf, n);
        if (codecs[c] != SLM_PACK_OWN) continue; /* the file path is codec-independent */
        unlink(back);
        s = slm_pack_unpack_file(packed, back);
        size_t nb = 0;
        uint8_t *b = read_all(back, &nb);
        CHECK(s == SLM_OK && b && nb == n_orig && memcmp(b, orig, nb) == 0, "%s: unpack to a file",
              slm_pack_codec_name(codecs[c]));
        free(b);
    }
    slm_gguf_free(g);

    /* Damage the last (auto) container: never a success with other bytes. */
    size_t np = 0;
    uint8_t *pk = read_all(packed, &np), *m = malloc(np + 1);
    int rejected = 0, harmless = 0, bad = 0;
    for (int it = 0; it < 1500 && pk; it++) {
        memcpy(m, pk, np);
        size_t ml = np;
        if (it % 4 == 3) ml = rnd() % np;
        else m[it < (int)np ? (size_t)it : rnd() % np] ^= (uint8_t)(1 + rnd() % 255);
        write_all(packed, m, ml);
        void *buf = NULL;
        size_t n = 0;
        s = slm_pack_unpack_memory(packed, &buf, &n);
        if (s) rejected++;
        else if (n == n_orig && memcmp(buf, orig, n) == 0) harmless++;
        else bad++;
        if (!s) slm_pack_release(buf, n);
    }
    CHECK(bad == 0, "%d damaged containers unpacked to other bytes", bad);
    CHECK(rejected > 1000, "damage rejected %d times (harmless %d: names, dtype, reserved bytes)", rejected, harmless);
    /* a flipped byte near the end (inside the last tensor's data): an error and no file */
    if (pk) {
        memcpy(m, pk, np);
        m[np - 5] ^= 0x40;
        write_all(packed, m, np);
        unlink(back);
        s = slm_pack_unpack_file(packed, back);
        CHECK(s != SLM_OK && strstr(slm_last_error(), "tensor 'c.weight'"), "damage in c.weight: %s",
              slm_last_error());
        CHECK(access(back, F_OK) != 0, "a failed unpack leaves no file");
    }
    free(m);
    free(pk);
    free(orig);
    free(q);
    free(h);
    unlink(model);
    unlink(packed);
    unlink(back);
    rmdir(dir);
}

int main(void) {
    test_plain();
    test_blocks();
    test_bad_layouts();
    test_mutations();
    test_container();
    return test_summary("entropy");
}
