/* test_tokenizer.c - tokenizer against reference ids, round trips, specials, streaming.
 *
 * Data (run from the repository root, as tests/run.sh does):
 *  tests/data/tokenizer_texts.txt          the text set
 *  tests/data/tokenizer_expected_smollm.txt ids of the real model's tokenizer (Hugging Face
 *                                           tokenizers; tests/reference/tokenizer_ref.py)
 *  tests/data/tokenizer_splits.txt         pre-tokenizer pieces (regex module; same script)
 *  tests/data/tokenizer_spm.gguf           a small SentencePiece BPE model and
 *  tests/data/tokenizer_expected_spm.txt   its sentencepiece ids (tokenizer_spm_make.py) */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "core/gguf.h"
#include "model/tokenizer.h"
#include "model/unicode.h"
#include "test.h"

#define MAX_TEXTS 256

typedef struct {
    char *s;
    size_t len;
} text;

static text g_texts[MAX_TEXTS];
static int g_n_texts;

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Unescape line[0..n) into out (room for n bytes); returns the length. */
static size_t unescape(const char *line, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '\\' && i + 1 < n) {
            char c = line[++i];
            if (c == 'n') out[o++] = '\n';
            else if (c == 't') out[o++] = '\t';
            else if (c == 'r') out[o++] = '\r';
            else if (c == '\\') out[o++] = '\\';
            else if (c == 'x' && i + 2 < n) {
                out[o++] = (char)(hexval(line[i + 1]) * 16 + hexval(line[i + 2]));
                i += 2;
            }
        } else {
            out[o++] = line[i];
        }
    }
    return o;
}

static int load_texts(const char *path) {
    size_t len;
    char *buf = read_file(path, &len);
    if (!buf) return -1;
    for (char *p = buf; p < buf + len && g_n_texts < MAX_TEXTS;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(buf + len - p);
        if (n > 0 && p[0] != '#') {
            text *t = &g_texts[g_n_texts++];
            if (n > 8 && memcmp(p, "@repeat ", 8) == 0) {
                long reps = strtol(p + 8, NULL, 10);
                char *sp = memchr(p + 8, ' ', n - 8);
                char unit[64];
                size_t ul = sp ? unescape(sp + 1, (size_t)(p + n - sp - 1), unit) : 0;
                t->len = (size_t)reps * ul;
                t->s = malloc(t->len + 1);
                for (long r = 0; r < reps; r++) memcpy(t->s + (size_t)r * ul, unit, ul);
            } else {
                t->s = malloc(n + 1);
                t->len = unescape(p, n, t->s);
            }
        }
        p += n + 1;
    }
    free(buf);
    return g_n_texts;
}

/* Parse a line of space-separated integers starting at *p; advances to the next line. */
static long next_int(char **p) {
    while (**p == ' ') (*p)++;
    return strtol(*p, p, 10);
}

static void skip_line(char **p) {
    char *nl = strchr(*p, '\n');
    *p = nl ? nl + 1 : *p + strlen(*p);
}

static bool ids_equal(const int32_t *a, size_t na, const long *b, size_t nb, size_t *first_diff) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    *first_diff = i;
    return na == nb && i == na;
}

/* ---------------------------------------------------------------- real model */

static int32_t g_byte_tok[256]; /* token of each byte's byte-level character, -1 if none */

static void init_byte_tokens(const slm_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        uint32_t cp = (uint32_t)b;
        if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
            int k = 0;
            for (int i = 0; i < b; i++)
                if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF))) k++;
            cp = 256u + (uint32_t)k;
        }
        char s[8];
        s[slm_utf8_encode(cp, s)] = 0;
        g_byte_tok[b] = slm_tokenizer_find(t, s);
    }
}

/* What decode(encode(s)) gives: bytes without a token come back as U+FFFD (malloc'd). */
static char *expected_decode(const char *s, size_t n, size_t *out_n) {
    char *o = malloc(3 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (g_byte_tok[(uint8_t)s[i]] >= 0) {
            o[k++] = s[i];
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
        }
    }
    *out_n = k;
    return o;
}

static void test_reference_ids(const slm_tokenizer *t) {
    size_t len;
    char *buf = read_file("tests/data/tokenizer_expected_smollm.txt", &len);
    CHECK(buf != NULL, "tests/data/tokenizer_expected_smollm.txt missing");
    if (!buf) return;
    int lines = 0, n_exact = 0;
    long *want = malloc(sizeof(long) * 20000);
    for (char *p = buf; *p;) {
        if (*p == '#') {
            skip_line(&p);
            continue;
        }
        long idx = next_int(&p), ps = next_int(&p), n = next_int(&p);
        for (long i = 0; i < n && i < 20000; i++) want[i] = next_int(&p);
        skip_line(&p);
        if (idx < 0 || idx >= g_n_texts) continue;
        int32_t *ids;
        size_t nids;
        slm_status s = slm_tokenizer_encode(t, g_texts[idx].s, g_texts[idx].len, false, ps != 0, &ids, &nids);
        CHECK(s == SLM_OK, "encode text %ld: %s", idx, slm_last_error());
        if (s != SLM_OK) continue;
        size_t d;
        bool eq = ids_equal(ids, nids, want, (size_t)n, &d);
        CHECK(eq, "text %ld parse_special %ld: %zu ids, reference %ld; first difference at %zu (%d vs %ld)", idx, ps, nids, n, d,
              d < nids ? ids[d] : -1, d < (size_t)n ? want[d] : -1L);
        lines++;
        /* decode(encode(x)) == x byte for byte (specials rendered when they were parsed). */
        char *dec;
        size_t dl;
        s = slm_tokenizer_decode(t, ids, nids, ps != 0, &dec, &dl);
        size_t xl;
        char *x = expected_decode(g_texts[idx].s, g_texts[idx].len, &xl);
        CHECK(s == SLM_OK && dl == xl && memcmp(dec, x, dl) == 0,
              "text %ld parse_special %ld: decode does not give the text back (%zu vs %zu bytes)", idx, ps, dl, xl);
        if (xl == g_texts[idx].len) n_exact++;
        free(x);
        if (s == SLM_OK) free(dec);
        free(ids);
    }
    CHECK(lines == 2 * g_n_texts, "reference has %d lines for %d texts", lines, g_n_texts);
    CHECK(n_exact >= 2 * (g_n_texts - 2), "only %d of %d encodings round trip byte for byte", n_exact, lines);
    free(want);
    free(buf);
}

static void test_splits(void) {
    size_t len;
    char *buf = read_file("tests/data/tokenizer_splits.txt", &len);
    CHECK(buf != NULL, "tests/data/tokenizer_splits.txt missing");
    if (!buf) return;
    long *want = malloc(sizeof(long) * 20000);
    int lines = 0;
    for (char *p = buf; *p;) {
        if (*p == '#') {
            skip_line(&p);
            continue;
        }
        char pre[32];
        int k = 0;
        while (*p && *p != ' ' && k < 31) pre[k++] = *p++;
        pre[k] = 0;
        long idx = next_int(&p), n = next_int(&p);
        for (long i = 0; i < n && i < 20000; i++) want[i] = next_int(&p);
        skip_line(&p);
        if (idx < 0 || idx >= g_n_texts) continue;
        size_t *ends, ne;
        slm_status s = slm_pretokenize(pre, g_texts[idx].s, g_texts[idx].len, &ends, &ne);
        CHECK(s == SLM_OK, "pretokenize %s: %s", pre, slm_last_error());
        if (s != SLM_OK) continue;
        size_t d = 0;
        while (d < ne && d < (size_t)n && ends[d] == (size_t)want[d]) d++;
        CHECK(ne == (size_t)n && d == ne, "%s split of text %ld: %zu pieces, reference %ld; first difference at piece %zu", pre, idx,
              ne, n, d);
        free(ends);
        lines++;
    }
    CHECK(lines == 4 * g_n_texts, "splits file has %d lines for %d texts", lines, g_n_texts);
    free(want);
    free(buf);
}

static bool utf8_complete(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)slm_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp & SLM_UTF8_INVALID) return false;
    }
    return true;
}

static void test_specials_and_stream(const slm_tokenizer *t) {
    int32_t im_start = slm_tokenizer_find(t, "<|im_start|>"), im_end = slm_tokenizer_find(t, "<|im_end|>");
    CHECK(im_start == 1 && im_end == 2, "<|im_start|> = %d, <|im_end|> = %d", im_start, im_end);
    CHECK(slm_tokenizer_is_eog(t, im_end), "<|im_end|> is end of generation");
    CHECK(slm_tokenizer_is_eog(t, slm_tokenizer_find(t, "<|endoftext|>")), "<|endoftext|> is end of generation");
    CHECK(!slm_tokenizer_is_eog(t, im_start) && !slm_tokenizer_is_eog(t, slm_tokenizer_find(t, "hello")), "others are not");
    CHECK(!slm_tokenizer_is_eog(t, -1) && !slm_tokenizer_is_eog(t, 1 << 30), "out of range ids are not eog");
    CHECK(slm_tokenizer_n_vocab(t) == 49152, "n_vocab %d", slm_tokenizer_n_vocab(t));
    CHECK(slm_tokenizer_bos(t) == 1 && slm_tokenizer_eos(t) == 2 && !slm_tokenizer_add_bos(t), "bos %d eos %d add_bos %d",
          slm_tokenizer_bos(t), slm_tokenizer_eos(t), slm_tokenizer_add_bos(t));

    const char *chat = "<|im_start|>user\nhi<|im_end|>";
    int32_t *ids;
    size_t n;
    CHECK(slm_tokenizer_encode(t, chat, strlen(chat), true, true, &ids, &n) == SLM_OK, "encode chat");
    CHECK(n >= 3 && ids[0] == im_start && ids[n - 1] == im_end, "parse_special: specials become their tokens (add_special adds nothing)");
    free(ids);
    CHECK(slm_tokenizer_encode(t, chat, strlen(chat), false, false, &ids, &n) == SLM_OK, "encode chat");
    bool any = false;
    for (size_t i = 0; i < n; i++) any |= ids[i] == im_start || ids[i] == im_end;
    CHECK(!any && n > 6, "without parse_special the text is split into ordinary pieces");
    free(ids);

    char buf[64];
    CHECK(slm_tokenizer_piece(t, im_end, false, buf, sizeof buf) == 0, "control piece hidden without render_special");
    int l = slm_tokenizer_piece(t, im_end, true, buf, sizeof buf);
    CHECK(l == 10 && memcmp(buf, "<|im_end|>", 10) == 0, "control piece rendered with render_special");
    CHECK(slm_tokenizer_piece(t, -1, true, buf, sizeof buf) == -1 && slm_tokenizer_piece(t, 49152, true, buf, sizeof buf) == -1,
          "piece of an out-of-range id is -1");
    l = slm_tokenizer_piece(t, slm_tokenizer_find(t, "Ġhello"), false, buf, 3);
    CHECK(l == 6 && memcmp(buf, " he", 3) == 0, "piece truncated to cap but reports its length (%d)", l);

    /* Streaming: the emoji as single byte tokens; nothing comes out until a character is whole. */
    const char *emoji = "a\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD\xE2\x80\x8D!";
    slm_detok d = {0};
    char out[256];
    size_t on = 0;
    bool whole = true;
    for (const char *p = emoji; *p; p++) {
        size_t k = slm_detok_push(&d, t, g_byte_tok[(uint8_t)*p], false, out + on, sizeof out - on);
        whole &= utf8_complete(out + on, k);
        on += k;
    }
    on += slm_detok_flush(&d, out + on, sizeof out - on);
    CHECK(whole, "each push wrote whole characters only");
    CHECK(on == strlen(emoji) && memcmp(out, emoji, on) == 0, "streamed bytes equal the text");

    /* Streaming the encoded ZWJ/skin-tone text and an invalid tail. */
    static const char *stream_texts[] = {("emoji: \xF0\x9F\x98\x80 \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 "
                                          "\xF0\x9F\x87\xAF\xF0\x9F\x87\xB5 \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4"),
                                         "cut \xF0\x9F\x98", "bad \xFF\xFE x \xC3("};
    for (size_t ti = 0; ti < sizeof stream_texts / sizeof stream_texts[0]; ti++) {
        const char *s = stream_texts[ti];
        CHECK(slm_tokenizer_encode(t, s, strlen(s), false, false, &ids, &n) == SLM_OK, "encode stream text");
        slm_detok_flush(&d, out, 0);
        on = 0;
        for (size_t i = 0; i < n; i++) on += slm_detok_push(&d, t, ids[i], false, out + on, sizeof out - on);
        on += slm_detok_flush(&d, out + on, sizeof out - on);
        size_t xl;
        char *x = expected_decode(s, strlen(s), &xl);
        CHECK(on == xl && memcmp(out, x, on) == 0, "stream text %zu: streamed bytes equal the text", ti);
        free(x);
        free(ids);
    }
}

static void test_long_runs(const slm_tokenizer *t) {
    /* Long runs are in the text set (checked against the reference); here a bigger mix. */
    size_t n = 100000;
    char *s = malloc(n);
    for (size_t i = 0; i < n; i++) s[i] = (i / 10000) % 2 ? ' ' : "ab"[(i / 20000) % 2];
    clock_t c0 = clock();
    int32_t *ids;
    size_t nids;
    slm_status st = slm_tokenizer_encode(t, s, n, false, false, &ids, &nids);
    double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    CHECK(st == SLM_OK && nids > 0, "encode 100,000 bytes of runs");
    printf("long runs: %zu bytes -> %zu tokens in %.3f s\n", n, nids, secs);
    if (st == SLM_OK) {
        char *dec;
        size_t dl;
        CHECK(slm_tokenizer_decode(t, ids, nids, false, &dec, &dl) == SLM_OK && dl == n && memcmp(dec, s, n) == 0, "runs round trip");
        free(dec);
        free(ids);
    }
    free(s);
}

/* ---------------------------------------------------------------- SentencePiece fixture */

static void test_spm(void) {
    slm_gguf *g;
    slm_status s = slm_gguf_open("tests/data/tokenizer_spm.gguf", &g);
    CHECK(s == SLM_OK, "open tests/data/tokenizer_spm.gguf: %s", slm_last_error());
    if (s != SLM_OK) return;
    slm_tokenizer *t;
    s = slm_tokenizer_load(g, &t);
    slm_gguf_free(g); /* the tokenizer keeps its own copy */
    CHECK(s == SLM_OK, "load spm tokenizer: %s", slm_last_error());
    if (s != SLM_OK) return;
    CHECK(slm_tokenizer_add_bos(t) && slm_tokenizer_bos(t) == 1 && slm_tokenizer_eos(t) == 2, "spm bos/eos");
    CHECK(slm_tokenizer_is_eog(t, 2), "</s> ends generation");

    size_t len;
    char *buf = read_file("tests/data/tokenizer_expected_spm.txt", &len);
    CHECK(buf != NULL, "tests/data/tokenizer_expected_spm.txt missing");
    long *want = malloc(sizeof(long) * 40000);
    int compared = 0, mismatched = 0;
    for (char *p = buf; p && *p;) {
        if (*p == '#') {
            skip_line(&p);
            continue;
        }
        long idx = next_int(&p);
        while (*p == ' ') p++;
        bool have = *p != '-';
        long n = 0;
        if (have) {
            n = next_int(&p);
            for (long i = 0; i < n && i < 40000; i++) want[i] = next_int(&p);
        }
        skip_line(&p);
        if (idx < 0 || idx >= g_n_texts) continue;
        int32_t *ids;
        size_t nids;
        s = slm_tokenizer_encode(t, g_texts[idx].s, g_texts[idx].len, false, false, &ids, &nids);
        CHECK(s == SLM_OK, "spm encode text %ld: %s", idx, slm_last_error());
        if (s != SLM_OK) continue;
        if (have) {
            size_t d;
            bool eq = ids_equal(ids, nids, want, (size_t)n, &d);
            CHECK(eq, "spm text %ld: %zu ids, sentencepiece %ld; first difference at %zu (%d vs %ld)", idx, nids, n, d,
                  d < nids ? ids[d] : -1, d < (size_t)n ? want[d] : -1L);
            compared++;
            mismatched += !eq;
        }
        char *dec;
        size_t dl;
        s = slm_tokenizer_decode(t, ids, nids, false, &dec, &dl);
        CHECK(s == SLM_OK && dl == g_texts[idx].len && memcmp(dec, g_texts[idx].s, dl) == 0,
              "spm text %ld: decode does not give the text back (%zu vs %zu bytes)", idx, dl, g_texts[idx].len);
        if (s == SLM_OK) free(dec);
        free(ids);
    }
    printf("spm: %d texts compared with sentencepiece, %d differ\n", compared, mismatched);
    CHECK(compared > 20, "spm reference compared %d texts", compared);

    int32_t *ids;
    size_t nids;
    CHECK(slm_tokenizer_encode(t, "Hello", 5, true, false, &ids, &nids) == SLM_OK && nids >= 2 && ids[0] == 1 && ids[nids - 1] != 2,
          "spm add_special prepends BOS only");
    free(ids);
    /* <0xXX> byte tokens decode to the byte. */
    int32_t b = slm_tokenizer_find(t, "<0x0A>");
    char c[8];
    CHECK(b >= 0 && slm_tokenizer_piece(t, b, false, c, sizeof c) == 1 && c[0] == '\n', "byte piece <0x0A> is a newline");
    int32_t w = slm_tokenizer_find(t, "\xE2\x96\x81the");
    CHECK(w >= 0 && slm_tokenizer_piece(t, w, false, c, sizeof c) == 4 && memcmp(c, " the", 4) == 0, "U+2581 decodes to a space");
    free(want);
    free(buf);
    slm_tokenizer_free(t);
}

/* ---------------------------------------------------------------- validation (in-memory GGUF) */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} wbuf;

static void wb_put(wbuf *w, const void *p, size_t n) {
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->b = realloc(w->b, w->cap);
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void wb_u32(wbuf *w, uint32_t v) { wb_put(w, &v, 4); }
static void wb_u64(wbuf *w, uint64_t v) { wb_put(w, &v, 8); }
static void wb_str(wbuf *w, const char *s) {
    wb_u64(w, strlen(s));
    wb_put(w, s, strlen(s));
}
static void kv_str(wbuf *w, const char *k, const char *v) {
    wb_str(w, k);
    wb_u32(w, SLM_GGUF_STRING);
    wb_str(w, v);
}
static void kv_strs(wbuf *w, const char *k, const char *const *v, size_t n) {
    wb_str(w, k);
    wb_u32(w, SLM_GGUF_ARRAY);
    wb_u32(w, SLM_GGUF_STRING);
    wb_u64(w, n);
    for (size_t i = 0; i < n; i++) wb_str(w, v[i]);
}
static void kv_i32s(wbuf *w, const char *k, const int32_t *v, size_t n) {
    wb_str(w, k);
    wb_u32(w, SLM_GGUF_ARRAY);
    wb_u32(w, SLM_GGUF_INT32);
    wb_u64(w, n);
    wb_put(w, v, n * 4);
}
static void kv_u32(wbuf *w, const char *k, uint32_t v) {
    wb_str(w, k);
    wb_u32(w, SLM_GGUF_UINT32);
    wb_u32(w, v);
}

/* A byte-level vocabulary: the 256 byte characters, then extra tokens. */
enum { V_BAD_PRE = 1, V_BAD_MODEL = 2, V_TYPE_LEN = 4, V_BOS_RANGE = 8, V_BAD_MERGE = 16, V_LLAMA3 = 32 };

static slm_status load_tiny(int variant, slm_tokenizer **out) {
    static char byte_chars[256][4];
    const char *toks[256 + 8];
    int32_t types[256 + 8];
    size_t nt = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = (uint32_t)b;
        if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
            int k = 0;
            for (int i = 0; i < b; i++)
                if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF))) k++;
            cp = 256u + (uint32_t)k;
        }
        byte_chars[b][slm_utf8_encode(cp, byte_chars[b])] = 0;
        types[nt] = 1;
        toks[nt++] = byte_chars[b];
    }
    static const char *extra[] = {"ab", "abc", "Ġab", "<|eot_id|>", "xyz"};
    for (size_t i = 0; i < 5; i++) {
        types[nt] = i == 3 ? 3 : 1;
        toks[nt++] = extra[i];
    }
    const char *merges_ok[] = {"a b", "ab c", "Ġ ab", "q r" /* result not in vocab: skipped */, "x yz" /* part missing */};
    const char *merges_bad[] = {"a b", "abc"};
    wbuf w = {0};
    wb_put(&w, "GGUF", 4);
    wb_u32(&w, 3);
    wb_u64(&w, 0);
    wb_u64(&w, 6);
    kv_str(&w, "tokenizer.ggml.model", variant & V_BAD_MODEL ? "bert" : "gpt2");
    kv_str(&w, "tokenizer.ggml.pre", variant & V_BAD_PRE ? "mystery-pre" : variant & V_LLAMA3 ? "llama-bpe" : "gpt2");
    kv_strs(&w, "tokenizer.ggml.tokens", toks, nt);
    kv_i32s(&w, "tokenizer.ggml.token_type", types, variant & V_TYPE_LEN ? nt - 1 : nt);
    if (variant & V_BAD_MERGE)
        kv_strs(&w, "tokenizer.ggml.merges", merges_bad, 2);
    else
        kv_strs(&w, "tokenizer.ggml.merges", merges_ok, 5);
    kv_u32(&w, "tokenizer.ggml.eos_token_id", variant & V_BOS_RANGE ? (uint32_t)nt : (uint32_t)nt - 2);
    slm_gguf *g;
    slm_status s = slm_gguf_parse(w.b, w.n, &g);
    if (s != SLM_OK) {
        free(w.b);
        return s;
    }
    s = slm_tokenizer_load(g, out);
    slm_gguf_free(g);
    free(w.b);
    return s;
}

static void test_validation(void) {
    slm_tokenizer *t;
    slm_status s = load_tiny(0, &t);
    CHECK(s == SLM_OK, "tiny vocab loads: %s", slm_last_error());
    if (s == SLM_OK) {
        int32_t *ids;
        size_t n;
        CHECK(slm_tokenizer_encode(t, "abc ab xyz", 10, false, false, &ids, &n) == SLM_OK, "tiny encode");
        int32_t abc = slm_tokenizer_find(t, "abc"), gab = slm_tokenizer_find(t, "Ġab");
        CHECK(n == 6 && ids[0] == abc && ids[1] == gab && ids[2] == slm_tokenizer_find(t, "Ġ") && ids[3] == slm_tokenizer_find(t, "x"),
              "merges applied, skipped merges ignored (n=%zu)", n);
        CHECK(slm_tokenizer_is_eog(t, slm_tokenizer_find(t, "<|eot_id|>")), "<|eot_id|> is eog");
        free(ids);
        slm_tokenizer_free(t);
    }
    s = load_tiny(V_LLAMA3, &t);
    CHECK(s == SLM_OK, "llama-bpe pre loads");
    if (s == SLM_OK) {
        int32_t *ids;
        size_t n;
        /* ignore_merges: "xyz" is a token although no merge makes it */
        CHECK(slm_tokenizer_encode(t, "xyz", 3, false, false, &ids, &n) == SLM_OK && n == 1 && ids[0] == slm_tokenizer_find(t, "xyz"),
              "llama-bpe takes a whole word that is a token");
        free(ids);
        slm_tokenizer_free(t);
    }
    s = load_tiny(V_BAD_PRE, &t);
    CHECK(s == SLM_ERR_UNSUPPORTED && strstr(slm_last_error(), "mystery-pre"), "unknown pre: %s", slm_last_error());
    CHECK(t == NULL, "no tokenizer on error");
    s = load_tiny(V_BAD_MODEL, &t);
    CHECK(s == SLM_ERR_UNSUPPORTED && strstr(slm_last_error(), "bert"), "unknown model: %s", slm_last_error());
    s = load_tiny(V_TYPE_LEN, &t);
    CHECK(s == SLM_ERR_FORMAT && strstr(slm_last_error(), "token_type"), "token_type length: %s", slm_last_error());
    s = load_tiny(V_BOS_RANGE, &t);
    CHECK(s == SLM_ERR_FORMAT && strstr(slm_last_error(), "eos_token_id"), "eos out of range: %s", slm_last_error());
    s = load_tiny(V_BAD_MERGE, &t);
    CHECK(s == SLM_ERR_FORMAT && strstr(slm_last_error(), "merges[1]"), "malformed merge: %s", slm_last_error());
    slm_tokenizer_free(NULL);
}

int main(void) {
    if (load_texts("tests/data/tokenizer_texts.txt") <= 0) {
        CHECK(0, "cannot read tests/data/tokenizer_texts.txt (run from the repository root)");
        return test_summary("tokenizer");
    }
    test_validation();
    test_splits();
    test_spm();

    const char *path = test_model_path();
    slm_gguf *g;
    slm_status s = slm_gguf_open(path, &g);
    CHECK(s == SLM_OK, "model %s: %s (fetch it with scripts/fetch-model.sh)", path, slm_last_error());
    if (s == SLM_OK) {
        slm_tokenizer *t;
        s = slm_tokenizer_load(g, &t);
        CHECK(s == SLM_OK, "load tokenizer: %s", slm_last_error());
        if (s == SLM_OK) {
            init_byte_tokens(t);
            test_reference_ids(t);
            test_specials_and_stream(t);
            test_long_runs(t);
            slm_tokenizer_free(t);
        }
        slm_gguf_free(g);
    }
    for (int i = 0; i < g_n_texts; i++) free(g_texts[i].s);
    return test_summary("tokenizer");
}
