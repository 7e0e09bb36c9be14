/* tokenizer.c - byte-level BPE ("gpt2") and SentencePiece-style BPE ("llama") tokenizers.
 *
 * Encoding runs in three stages:
 *  1. special-token partition: control tokens (only with parse_special) and user-defined
 *     tokens found literally in the text become tokens; the text between them is "raw";
 *  2. pre-tokenization (gpt2 only): each raw fragment is split into pieces by the
 *     pre-tokenizer the model names (hand-written matchers equivalent to its split regex);
 *  3. BPE inside each piece, merging the best adjacent pair first with a binary heap
 *     (lowest merge rank for gpt2, highest score of the merged piece for llama).
 *
 * Everything read from the file is validated at load. A merge whose two parts or whose
 * result is not in the vocabulary is skipped (it could never apply); a merge that is not
 * two non-empty parts separated by a space is a format error.
 *
 * The tokenizer is immutable after load: encode allocates its scratch per call, so one
 * tokenizer may be used by several threads at once. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

enum { FAM_GPT2, FAM_SPM };
enum { PRE_GPT2, PRE_SMOLLM, PRE_LLAMA3, PRE_QWEN2 };
enum { TT_UNDEFINED = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct {
    uint64_t key; /* (left id << 32) | right id; UINT64_MAX marks an empty slot */
    int32_t rank;
    int32_t id; /* the merged token */
} merge_slot;

struct slm_tokenizer {
    int family;
    int pre;
    bool ignore_merges; /* emit a whole piece that is itself a token without merging */
    int32_t n_vocab;
    char *text;       /* every token's text, each followed by a NUL */
    size_t *text_off; /* [n_vocab] */
    uint32_t *text_len; /* [n_vocab] */
    uint8_t *type;    /* [n_vocab] TT_* */
    float *score;     /* [n_vocab] (zeros when the file has none) */
    bool *eog;        /* [n_vocab] */
    int32_t *vhash;   /* [vhash_cap] token id or -1; open addressing on the text */
    size_t vhash_cap;
    merge_slot *mhash; /* [mhash_cap] */
    size_t mhash_cap;
    int32_t byte_id[256]; /* gpt2: token of each byte's character; llama: <0xXX>; -1 if none */
    int16_t cp_byte[324]; /* gpt2: byte a code point below 324 stands for, or -1 */
    int32_t bos, eos, eot, unk;
    bool add_bos, add_eos, add_space_prefix;
    int32_t *special;        /* tokens matched literally in the text, by first byte then longest */
    size_t n_special;
    size_t special_first[257]; /* special[special_first[b] .. special_first[b+1]) start with byte b */
};

/* ---------------------------------------------------------------- hashing and lookup */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static int32_t vocab_find(const slm_tokenizer *t, const char *s, size_t n) {
    size_t mask = t->vhash_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = t->vhash[i];
        if (id < 0) return -1;
        if (t->text_len[id] == n && memcmp(t->text + t->text_off[id], s, n) == 0) return id;
    }
}

static const merge_slot *merge_find(const slm_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->mhash_cap - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
        if (t->mhash[i].key == UINT64_MAX) return NULL;
        if (t->mhash[i].key == key) return &t->mhash[i];
    }
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

/* GPT-2's byte <-> character map: printable Latin-1 bytes stand for themselves, the other
 * 68 bytes (controls, space, DEL, NBSP, soft hyphen) for U+0100 onwards in byte order. */
static uint32_t gpt2_byte_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int n = 0;
    for (int i = 0; i < b; i++)
        if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF))) n++;
    return 256u + (uint32_t)n;
}

/* ---------------------------------------------------------------- loading */

void slm_tokenizer_free(slm_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->type);
    free(t->score);
    free(t->eog);
    free(t->vhash);
    free(t->mhash);
    free(t->special);
    free(t);
}

/* Optional token id key: absent gives -1; present must be a valid id. */
static slm_status load_id(const slm_gguf *g, const char *key, int32_t n_vocab, int32_t *out) {
    uint32_t v;
    slm_status s = slm_gguf_get_u32(g, key, &v);
    if (s == SLM_ERR_NOT_FOUND) {
        *out = -1;
        return SLM_OK;
    }
    if (s != SLM_OK) return s;
    if (v >= (uint32_t)n_vocab) return slm_error(SLM_ERR_FORMAT, "%s = %u is not below the vocabulary size %d", key, v, n_vocab);
    *out = (int32_t)v;
    return SLM_OK;
}

static slm_status load_bool(const slm_gguf *g, const char *key, bool dflt, bool *out) {
    slm_status s = slm_gguf_get_bool(g, key, out);
    if (s == SLM_ERR_NOT_FOUND) {
        *out = dflt;
        return SLM_OK;
    }
    return s;
}

/* Sort key of a token matched literally: by first byte, then longest first, then id. */
typedef struct {
    uint32_t first, len;
    int32_t id;
} special_key;

static int cmp_special(const void *pa, const void *pb) {
    const special_key *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : (a->id > b->id);
}

static slm_status load_merges(slm_tokenizer *t, const slm_gguf *g) {
    const slm_gguf_value *mv;
    slm_status s = slm_gguf_get_arr(g, "tokenizer.ggml.merges", SLM_GGUF_STRING, &mv);
    if (s == SLM_ERR_NOT_FOUND) return slm_error(s, "tokenizer.ggml.merges is missing (required by the gpt2 tokenizer)");
    if (s != SLM_OK) return s;
    uint64_t n = mv->arr.n;
    if (n > (uint64_t)INT32_MAX) return slm_error(SLM_ERR_FORMAT, "tokenizer.ggml.merges has %llu entries", (unsigned long long)n);
    t->mhash_cap = pow2_at_least((size_t)n * 2 + 1);
    t->mhash = malloc(t->mhash_cap * sizeof *t->mhash);
    if (!t->mhash) return slm_error(SLM_ERR_NOMEM, "tokenizer merges: out of memory");
    for (size_t i = 0; i < t->mhash_cap; i++) t->mhash[i].key = UINT64_MAX;
    char *joined = NULL;
    size_t joined_cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        slm_gguf_str m = mv->arr.items[i].str;
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', (size_t)m.len - 1) : NULL;
        if (!sp || (uint64_t)(sp - m.ptr) + 1 >= m.len) {
            free(joined);
            return slm_error(SLM_ERR_FORMAT, "tokenizer.ggml.merges[%llu] ('%.*s') is not two pieces separated by a space",
                             (unsigned long long)i, (int)(m.len > 64 ? 64 : m.len), m.ptr);
        }
        size_t la = (size_t)(sp - m.ptr), lb = (size_t)m.len - la - 1;
        int32_t a = vocab_find(t, m.ptr, la), b = vocab_find(t, sp + 1, lb);
        if (a < 0 || b < 0) continue; /* a part outside the vocabulary: the merge can never apply */
        if (la + lb > joined_cap) {
            joined_cap = (la + lb) * 2;
            char *nj = realloc(joined, joined_cap);
            if (!nj) {
                free(joined);
                return slm_error(SLM_ERR_NOMEM, "tokenizer merges: out of memory");
            }
            joined = nj;
        }
        memcpy(joined, m.ptr, la);
        memcpy(joined + la, sp + 1, lb);
        int32_t r = vocab_find(t, joined, la + lb);
        if (r < 0) continue; /* result outside the vocabulary */
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
        size_t mask = t->mhash_cap - 1;
        size_t j = hash_u64(key) & mask;
        while (t->mhash[j].key != UINT64_MAX && t->mhash[j].key != key) j = (j + 1) & mask;
        if (t->mhash[j].key == key) continue; /* duplicate: the first (best) rank stays */
        t->mhash[j].key = key;
        t->mhash[j].rank = (int32_t)i;
        t->mhash[j].id = r;
    }
    free(joined);
    return SLM_OK;
}

static slm_status load_impl(slm_tokenizer *t, const slm_gguf *g) {
    slm_gguf_str model;
    slm_status s = slm_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (s == SLM_ERR_NOT_FOUND) return slm_error(s, "tokenizer.ggml.model is missing");
    if (s != SLM_OK) return s;
    if (slm_gguf_str_eq(model, "gpt2"))
        t->family = FAM_GPT2;
    else if (slm_gguf_str_eq(model, "llama"))
        t->family = FAM_SPM;
    else
        return slm_error(SLM_ERR_UNSUPPORTED, "tokenizer model '%.*s' is not supported (gpt2, llama)",
                         (int)(model.len > 64 ? 64 : model.len), model.ptr);

    if (t->family == FAM_GPT2) {
        slm_gguf_str pre;
        s = slm_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
        if (s == SLM_ERR_NOT_FOUND) {
            t->pre = PRE_GPT2;
        } else if (s != SLM_OK) {
            return s;
        } else if (slm_gguf_str_eq(pre, "default") || slm_gguf_str_eq(pre, "gpt2") || slm_gguf_str_eq(pre, "gpt-2")) {
            t->pre = PRE_GPT2;
        } else if (slm_gguf_str_eq(pre, "smollm")) {
            t->pre = PRE_SMOLLM;
        } else if (slm_gguf_str_eq(pre, "llama-bpe") || slm_gguf_str_eq(pre, "llama3")) {
            t->pre = PRE_LLAMA3;
            t->ignore_merges = true;
        } else if (slm_gguf_str_eq(pre, "qwen2")) {
            t->pre = PRE_QWEN2;
        } else {
            return slm_error(SLM_ERR_UNSUPPORTED, "pre-tokenizer '%.*s' is not supported (default, gpt2, smollm, llama-bpe, qwen2)",
                             (int)(pre.len > 64 ? 64 : pre.len), pre.ptr);
        }
    }

    const slm_gguf_value *tv;
    s = slm_gguf_get_arr(g, "tokenizer.ggml.tokens", SLM_GGUF_STRING, &tv);
    if (s == SLM_ERR_NOT_FOUND) return slm_error(s, "tokenizer.ggml.tokens is missing");
    if (s != SLM_OK) return s;
    if (tv->arr.n == 0 || tv->arr.n > (uint64_t)INT32_MAX / 4)
        return slm_error(SLM_ERR_FORMAT, "tokenizer.ggml.tokens has %llu entries", (unsigned long long)tv->arr.n);
    size_t n = (size_t)tv->arr.n;
    t->n_vocab = (int32_t)n;

    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t l = tv->arr.items[i].str.len;
        if (l > UINT32_MAX / 2 || total > SIZE_MAX / 2 - l - 1)
            return slm_error(SLM_ERR_FORMAT, "tokenizer.ggml.tokens[%zu] is too long (%llu bytes)", i, (unsigned long long)l);
        total += (size_t)l + 1;
    }
    t->text = malloc(total);
    t->text_off = malloc(n * sizeof *t->text_off);
    t->text_len = malloc(n * sizeof *t->text_len);
    t->type = malloc(n);
    t->score = calloc(n, sizeof *t->score);
    t->eog = calloc(n, sizeof *t->eog);
    t->vhash_cap = pow2_at_least(n * 2 + 1);
    t->vhash = malloc(t->vhash_cap * sizeof *t->vhash);
    if (!t->text || !t->text_off || !t->text_len || !t->type || !t->score || !t->eog || !t->vhash)
        return slm_error(SLM_ERR_NOMEM, "tokenizer: out of memory for %zu tokens", n);
    memset(t->vhash, 0xFF, t->vhash_cap * sizeof *t->vhash);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        slm_gguf_str str = tv->arr.items[i].str;
        if (str.len) memcpy(t->text + off, str.ptr, (size_t)str.len);
        t->text[off + str.len] = 0;
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)str.len;
        off += (size_t)str.len + 1;
        /* Insert; a text seen twice keeps its first id. */
        size_t mask = t->vhash_cap - 1, j = hash_bytes(t->text + t->text_off[i], t->text_len[i]) & mask;
        bool dup = false;
        for (; t->vhash[j] >= 0; j = (j + 1) & mask) {
            int32_t o = t->vhash[j];
            if (t->text_len[o] == t->text_len[i] && memcmp(t->text + t->text_off[o], t->text + t->text_off[i], t->text_len[i]) == 0) {
                dup = true;
                break;
            }
        }
        if (!dup) t->vhash[j] = (int32_t)i;
    }

    const slm_gguf_value *ty;
    s = slm_gguf_get_arr(g, "tokenizer.ggml.token_type", SLM_GGUF_INT32, &ty);
    if (s == SLM_OK) {
        if (ty->arr.n != n)
            return slm_error(SLM_ERR_FORMAT, "tokenizer.ggml.token_type has %llu entries, tokens has %zu", (unsigned long long)ty->arr.n, n);
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = ty->arr.raw + 4 * i;
            int32_t v = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
            if (v < 0 || v > TT_BYTE) return slm_error(SLM_ERR_FORMAT, "tokenizer.ggml.token_type[%zu] = %d is not a token type (0..6)", i, v);
            t->type[i] = (uint8_t)v;
        }
    } else if (s == SLM_ERR_NOT_FOUND) {
        memset(t->type, TT_NORMAL, n);
    } else {
        return s;
    }

    const slm_gguf_value *sc;
    s = slm_gguf_get_arr(g, "tokenizer.ggml.scores", SLM_GGUF_FLOAT32, &sc);
    if (s == SLM_OK) {
        if (sc->arr.n != n)
            return slm_error(SLM_ERR_FORMAT, "tokenizer.ggml.scores has %llu entries, tokens has %zu", (unsigned long long)sc->arr.n, n);
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = sc->arr.raw + 4 * i;
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&t->score[i], &u, 4);
            if (t->score[i] != t->score[i]) return slm_error(SLM_ERR_FORMAT, "tokenizer.ggml.scores[%zu] is NaN", i);
        }
    } else if (s == SLM_ERR_NOT_FOUND) {
        if (t->family == FAM_SPM) return slm_error(s, "tokenizer.ggml.scores is missing (required by the llama tokenizer)");
    } else {
        return s;
    }

    if ((s = load_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos)) != SLM_OK) return s;
    if ((s = load_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos)) != SLM_OK) return s;
    if ((s = load_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot)) != SLM_OK) return s;
    if ((s = load_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk)) != SLM_OK) return s;
    bool spm = t->family == FAM_SPM;
    if ((s = load_bool(g, "tokenizer.ggml.add_bos_token", spm, &t->add_bos)) != SLM_OK) return s;
    if ((s = load_bool(g, "tokenizer.ggml.add_eos_token", false, &t->add_eos)) != SLM_OK) return s;
    if ((s = load_bool(g, "tokenizer.ggml.add_space_prefix", spm, &t->add_space_prefix)) != SLM_OK) return s;
    if (!spm) t->add_space_prefix = false; /* byte-level BPE never adds one */

    /* End-of-generation tokens. */
    if (t->eos >= 0) t->eog[t->eos] = true;
    if (t->eot >= 0) t->eog[t->eot] = true;
    static const char *const eog_names[] = {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>", "<end_of_turn>", "</s>"};
    for (size_t i = 0; i < sizeof eog_names / sizeof eog_names[0]; i++) {
        int32_t id = vocab_find(t, eog_names[i], strlen(eog_names[i]));
        if (id >= 0) t->eog[id] = true;
    }

    /* Byte tokens. */
    for (int b = 0; b < 256; b++) {
        char tmp[8];
        int len;
        if (t->family == FAM_GPT2)
            len = slm_utf8_encode(gpt2_byte_cp(b), tmp);
        else
            len = snprintf(tmp, sizeof tmp, "<0x%02X>", b);
        t->byte_id[b] = vocab_find(t, tmp, (size_t)len);
    }
    memset(t->cp_byte, 0xFF, sizeof t->cp_byte);
    for (int b = 0; b < 256; b++) t->cp_byte[gpt2_byte_cp(b)] = (int16_t)b;

    if (t->family == FAM_GPT2 && (s = load_merges(t, g)) != SLM_OK) return s;

    /* Tokens recognized literally in the text: control (with parse_special) and user-defined. */
    size_t ns = 0;
    for (size_t i = 0; i < n; i++)
        if ((t->type[i] == TT_CONTROL || t->type[i] == TT_USER) && t->text_len[i] > 0) ns++;
    t->special = malloc((ns ? ns : 1) * sizeof *t->special);
    special_key *keys = malloc((ns ? ns : 1) * sizeof *keys);
    if (!t->special || !keys) {
        free(keys);
        return slm_error(SLM_ERR_NOMEM, "tokenizer: out of memory");
    }
    ns = 0;
    for (size_t i = 0; i < n; i++)
        if ((t->type[i] == TT_CONTROL || t->type[i] == TT_USER) && t->text_len[i] > 0)
            keys[ns++] = (special_key){(uint8_t)t->text[t->text_off[i]], t->text_len[i], (int32_t)i};
    qsort(keys, ns, sizeof *keys, cmp_special);
    for (size_t i = 0; i < ns; i++) t->special[i] = keys[i].id;
    free(keys);
    t->n_special = ns;
    size_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < ns && (uint8_t)t->text[t->text_off[t->special[k]]] < b) k++;
        t->special_first[b] = k;
    }
    return SLM_OK;
}

slm_status slm_tokenizer_load(const slm_gguf *g, slm_tokenizer **out) {
    *out = NULL;
    if (!g) return slm_error(SLM_ERR_ARG, "slm_tokenizer_load: no gguf");
    slm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return slm_error(SLM_ERR_NOMEM, "tokenizer: out of memory");
    slm_status s = load_impl(t, g);
    if (s != SLM_OK) {
        slm_tokenizer_free(t);
        return s;
    }
    *out = t;
    return SLM_OK;
}

int32_t slm_tokenizer_n_vocab(const slm_tokenizer *t) { return t->n_vocab; }
int32_t slm_tokenizer_bos(const slm_tokenizer *t) { return t->bos; }
int32_t slm_tokenizer_eos(const slm_tokenizer *t) { return t->eos; }
bool slm_tokenizer_add_bos(const slm_tokenizer *t) { return t->add_bos; }
bool slm_tokenizer_is_eog(const slm_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab && t->eog[id]; }
int32_t slm_tokenizer_find(const slm_tokenizer *t, const char *text) { return vocab_find(t, text, strlen(text)); }

/* ---------------------------------------------------------------- pre-tokenizers
 *
 * Each matcher returns where the match starting at i ends (> i) within the segment [i, e),
 * trying the alternatives of its regex in order, as a backtracking regex engine would.
 * cp[] are code points (SLM_UTF8_INVALID | byte for an invalid byte), fl[] their flags. */

#define F_L SLM_UCD_LETTER
#define F_N SLM_UCD_NUMBER
#define F_S SLM_UCD_WHITESPACE

static uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive: end of the match or 0. */
static size_t match_contraction(const uint32_t *cp, size_t i, size_t e, bool icase) {
    if (cp[i] != '\'' || i + 1 >= e) return 0;
    uint32_t a = icase ? ascii_lower(cp[i + 1]) : cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= e) return 0;
    uint32_t b = icase ? ascii_lower(cp[i + 2]) : cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

static size_t run_of(const uint8_t *fl, size_t i, size_t e, uint8_t mask) {
    while (i < e && (fl[i] & mask)) i++;
    return i;
}

static bool is_other(uint8_t f) { return !(f & (F_L | F_N | F_S)); }

static size_t run_other(const uint8_t *fl, size_t i, size_t e) {
    while (i < e && is_other(fl[i])) i++;
    return i;
}

/* \s+(?!\S)|\s+ at a whitespace character i. */
static size_t match_space_tail(const uint8_t *fl, size_t i, size_t e) {
    size_t k = run_of(fl, i, e, F_S);
    if (k == e) return k;           /* whitespace up to the end */
    if (k - i >= 2) return k - 1;   /* leave the last one to prefix the next word */
    return k;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const uint32_t *cp, const uint8_t *fl, size_t i, size_t e) {
    size_t k = match_contraction(cp, i, e, false);
    if (k) return k;
    size_t s = (cp[i] == ' ' && i + 1 < e) ? i + 1 : i;
    if (fl[s] & F_L) return run_of(fl, s, e, F_L);
    if (fl[s] & F_N) return run_of(fl, s, e, F_N);
    if (is_other(fl[s])) return run_other(fl, s, e);
    if (fl[i] & F_S) return match_space_tail(fl, i, e);
    return i + 1;
}

static bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

/* Llama 3 (max_digits 3) and Qwen2 (max_digits 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t match_llama3(const uint32_t *cp, const uint8_t *fl, size_t i, size_t e, size_t max_digits) {
    size_t k = match_contraction(cp, i, e, true);
    if (k) return k;
    if (fl[i] & F_L) return run_of(fl, i, e, F_L);
    if (!is_crlf(cp[i]) && !(fl[i] & (F_L | F_N)) && i + 1 < e && (fl[i + 1] & F_L)) return run_of(fl, i + 1, e, F_L);
    if (fl[i] & F_N) {
        k = i;
        while (k < e && k - i < max_digits && (fl[k] & F_N)) k++;
        return k;
    }
    size_t s = (cp[i] == ' ' && i + 1 < e && is_other(fl[i + 1])) ? i + 1 : i;
    if (is_other(fl[s])) {
        k = run_other(fl, s, e);
        while (k < e && is_crlf(cp[k])) k++;
        return k;
    }
    if (fl[i] & F_S) {
        k = run_of(fl, i, e, F_S);
        for (size_t p = k; p > i; p--)
            if (is_crlf(cp[p - 1])) return p; /* \s*[\r\n]+ ends after the last newline of the run */
        return match_space_tail(fl, i, e);
    }
    return i + 1;
}

/* Split cp[0..n) into pieces; ends[] receives each piece's end index. Returns the count. */
static size_t pretokenize(int pre, const uint32_t *cp, const uint8_t *fl, size_t n, size_t *ends) {
    size_t count = 0, i = 0;
    while (i < n) {
        size_t e = n;
        if (pre == PRE_SMOLLM) {
            /* Every digit is a piece of its own; the GPT-2 pattern runs between digits. */
            if (fl[i] & F_N) {
                ends[count++] = ++i;
                continue;
            }
            e = i;
            while (e < n && !(fl[e] & F_N)) e++;
        }
        while (i < e) {
            size_t k;
            switch (pre) {
            case PRE_LLAMA3: k = match_llama3(cp, fl, i, e, 3); break;
            case PRE_QWEN2: k = match_llama3(cp, fl, i, e, 1); break;
            default: k = match_gpt2(cp, fl, i, e); break;
            }
            if (k <= i || k > e) k = i + 1; /* cannot happen; keeps progress guaranteed */
            ends[count++] = k;
            i = k;
        }
    }
    return count;
}

/* ---------------------------------------------------------------- BPE core */

typedef struct {
    double key;   /* smaller is better: merge rank, or minus the merged piece's score */
    int32_t left; /* symbol index of the left part (its first byte in the piece) */
    int32_t right;
    int32_t size; /* bytes of the merged piece, to detect stale entries */
} bpe_cand;

static bool cand_less(const bpe_cand *a, const bpe_cand *b) {
    if (a->key != b->key) return a->key < b->key;
    return a->left < b->left;
}

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Scratch for one encode call, sized for the longest piece. */
typedef struct {
    int32_t *id;   /* [cap] token of the symbol starting at this byte (-1: none) */
    int32_t *len;  /* [cap] bytes of the symbol (0: merged away) */
    int32_t *prev, *next;
    bpe_cand *heap; /* [3 * cap] */
    char *buf;      /* [4 * cap] byte-level or escaped text */
    size_t cap;
} bpe_scratch;

/* Grow w to hold a piece of `bytes` input bytes (3 symbol slots per byte: the U+FFFD and
 * U+2581 substitutions turn one byte into three). */
static slm_status scratch_reserve(bpe_scratch *w, size_t bytes) {
    size_t cap = bytes * 3 + 3;
    if (cap <= w->cap) return SLM_OK;
    if (cap < 2 * w->cap) cap = 2 * w->cap;
    void *p[6] = {realloc(w->id, cap * sizeof *w->id), NULL, NULL, NULL, NULL, NULL};
    if (p[0]) w->id = p[0];
    if (p[0] && (p[1] = realloc(w->len, cap * sizeof *w->len))) w->len = p[1];
    if (p[1] && (p[2] = realloc(w->prev, cap * sizeof *w->prev))) w->prev = p[2];
    if (p[2] && (p[3] = realloc(w->next, cap * sizeof *w->next))) w->next = p[3];
    if (p[3] && (p[4] = realloc(w->heap, cap * 3 * sizeof *w->heap))) w->heap = p[4];
    if (p[4] && (p[5] = realloc(w->buf, cap * 4))) w->buf = p[5];
    if (!p[5]) return slm_error(SLM_ERR_NOMEM, "tokenizer encode: out of memory for a piece of %zu bytes", bytes);
    w->cap = cap;
    return SLM_OK;
}

typedef struct {
    int32_t *ids;
    size_t n, cap;
} id_vec;

static slm_status push_id(id_vec *v, int32_t id) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->ids, nc * sizeof *p);
        if (!p) return slm_error(SLM_ERR_NOMEM, "tokenizer encode: out of memory");
        v->ids = p;
        v->cap = nc;
    }
    v->ids[v->n++] = id;
    return SLM_OK;
}

static bool merge_allowed_type(uint8_t ty) { return ty == TT_NORMAL || ty == TT_UNDEFINED || ty == TT_USER; }

/* Candidate for merging symbols l and r (adjacent), pushed if the pair can merge. */
static void spm_try_pair(const slm_tokenizer *t, bpe_scratch *w, const char *s, size_t *hn, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    int32_t size = w->len[l] + w->len[r];
    int32_t id = vocab_find(t, s + l, (size_t)size);
    if (id < 0 || !merge_allowed_type(t->type[id])) return;
    bpe_cand c = {-(double)t->score[id], l, r, size};
    heap_push(w->heap, hn, c);
}

static void gpt2_try_pair(const slm_tokenizer *t, bpe_scratch *w, size_t *hn, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const merge_slot *m = merge_find(t, w->id[l], w->id[r]);
    if (!m) return;
    bpe_cand c = {(double)m->rank, l, r, w->len[l] + w->len[r]};
    heap_push(w->heap, hn, c);
}

/* Run the merge loop over symbols already set up in w for n bytes (first symbol at 0). */
static void bpe_merge(const slm_tokenizer *t, bpe_scratch *w, const char *s, size_t n) {
    size_t hn = 0;
    for (int32_t i = 0; i >= 0 && (size_t)i < n; i = w->next[i]) {
        if (t->family == FAM_GPT2)
            gpt2_try_pair(t, w, &hn, i, w->next[i]);
        else
            spm_try_pair(t, w, s, &hn, i, w->next[i]);
    }
    while (hn) {
        bpe_cand c = heap_pop(w->heap, &hn);
        int32_t l = c.left, r = c.right;
        if (w->len[l] == 0 || w->len[r] == 0 || w->next[l] != r || w->len[l] + w->len[r] != c.size) continue; /* stale */
        if (t->family == FAM_GPT2) {
            const merge_slot *m = merge_find(t, w->id[l], w->id[r]);
            w->id[l] = m->id;
        } else {
            w->id[l] = vocab_find(t, s + l, (size_t)c.size);
        }
        w->len[l] = c.size;
        w->len[r] = 0;
        w->next[l] = w->next[r];
        if (w->next[r] >= 0) w->prev[w->next[r]] = l;
        if (t->family == FAM_GPT2) {
            gpt2_try_pair(t, w, &hn, w->prev[l], l);
            gpt2_try_pair(t, w, &hn, l, w->next[l]);
        } else {
            spm_try_pair(t, w, s, &hn, w->prev[l], l);
            spm_try_pair(t, w, s, &hn, l, w->next[l]);
        }
    }
}

/* Byte-level BPE of one pre-token (raw bytes raw[0..rn)). A byte without a token in the
 * vocabulary (byte-level vocabularies often lack C0, C1 and F5..FF, which never occur in
 * valid UTF-8) is encoded as U+FFFD, or dropped if that has no tokens either. */
static slm_status encode_gpt2_piece(const slm_tokenizer *t, bpe_scratch *w, const char *raw, size_t rn, id_vec *out) {
    slm_status st = scratch_reserve(w, rn);
    if (st != SLM_OK) return st;
    const char *s = raw;
    size_t n = rn;
    for (size_t i = 0; i < rn; i++) {
        if (t->byte_id[(uint8_t)raw[i]] >= 0) continue;
        /* Substitute into the spare half of w->buf (room for 3 bytes per input byte). */
        char *sub = w->buf + 2 * w->cap;
        bool fffd = t->byte_id[0xEF] >= 0 && t->byte_id[0xBF] >= 0 && t->byte_id[0xBD] >= 0;
        n = 0;
        for (size_t k = 0; k < rn; k++) {
            if (t->byte_id[(uint8_t)raw[k]] >= 0) {
                sub[n++] = raw[k];
            } else if (fffd) {
                memcpy(sub + n, "\xEF\xBF\xBD", 3);
                n += 3;
            }
        }
        s = sub;
        break;
    }
    if (n == 0) return SLM_OK;
    if (t->ignore_merges) {
        size_t bl = 0;
        for (size_t i = 0; i < n; i++) bl += (size_t)slm_utf8_encode(gpt2_byte_cp((uint8_t)s[i]), w->buf + bl);
        int32_t id = vocab_find(t, w->buf, bl);
        if (id >= 0) return push_id(out, id);
    }
    for (size_t i = 0; i < n; i++) {
        w->id[i] = t->byte_id[(uint8_t)s[i]];
        w->len[i] = 1;
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    bpe_merge(t, w, s, n);
    for (int32_t i = 0; i >= 0; i = w->next[i])
        if ((st = push_id(out, w->id[i])) != SLM_OK) return st;
    return SLM_OK;
}

/* SentencePiece-style BPE of one raw fragment. */
static slm_status encode_spm_fragment(const slm_tokenizer *t, bpe_scratch *w, const char *text, size_t len, bool prefix,
                                      id_vec *out) {
    slm_status st = scratch_reserve(w, len + 1);
    if (st != SLM_OK) return st;
    /* Escape: optional leading space, every ' ' becomes U+2581. */
    size_t n = 0;
    char *s = w->buf;
    if (prefix) {
        memcpy(s, "\xE2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s + n, "\xE2\x96\x81", 3);
            n += 3;
        } else {
            s[n++] = text[i];
        }
    }
    /* One symbol per character (an invalid byte is a character of its own). */
    int32_t last = -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = slm_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        w->len[i] = l;
        w->id[i] = -1;
        w->prev[i] = last;
        w->next[i] = -1;
        if (last >= 0) w->next[last] = (int32_t)i;
        last = (int32_t)i;
        i += (size_t)l;
    }
    bpe_merge(t, w, s, n);
    for (int32_t i = 0; i >= 0 && (size_t)i < n; i = w->next[i]) {
        int32_t id = vocab_find(t, s + i, (size_t)w->len[i]);
        if (id >= 0 && merge_allowed_type(t->type[id])) {
            if ((st = push_id(out, id)) != SLM_OK) return st;
            continue;
        }
        /* Byte fallback; the unknown token when a byte has no token; nothing if neither exists. */
        for (int32_t k = 0; k < w->len[i]; k++) {
            int32_t b = t->byte_id[(uint8_t)s[i + k]];
            if (b < 0) b = t->unk;
            if (b >= 0 && (st = push_id(out, b)) != SLM_OK) return st;
        }
    }
    return SLM_OK;
}

static void scratch_free(bpe_scratch *w) {
    free(w->id);
    free(w->len);
    free(w->prev);
    free(w->next);
    free(w->heap);
    free(w->buf);
}

/* Decode text[0..len) into code points, their flags and byte offsets (off[n] = len). */
static size_t decode_cps(const char *text, size_t len, uint32_t *cp, uint8_t *fl, size_t *off) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int l = slm_utf8_decode((const uint8_t *)text + i, len - i, &cp[n]);
        fl[n] = (uint8_t)slm_ucd_flags(cp[n]);
        off[n++] = i;
        i += (size_t)l;
    }
    off[n] = len;
    return n;
}

/* Encode one raw fragment (no special tokens inside). */
static slm_status encode_raw(const slm_tokenizer *t, bpe_scratch *w, const char *text, size_t len, bool prefix, uint32_t *cp,
                             uint8_t *fl, size_t *off, size_t *ends, id_vec *out) {
    if (len == 0) return SLM_OK;
    if (t->family == FAM_SPM) return encode_spm_fragment(t, w, text, len, prefix, out);
    size_t n = decode_cps(text, len, cp, fl, off);
    size_t np = pretokenize(t->pre, cp, fl, n, ends);
    size_t start = 0;
    for (size_t p = 0; p < np; p++) {
        size_t b0 = off[start], b1 = off[ends[p]];
        slm_status st = encode_gpt2_piece(t, w, text + b0, b1 - b0, out);
        if (st != SLM_OK) return st;
        start = ends[p];
    }
    return SLM_OK;
}

/* Longest special token matching at text[i..len), or -1. */
static int32_t match_special(const slm_tokenizer *t, const char *text, size_t i, size_t len, bool parse_special) {
    uint8_t b = (uint8_t)text[i];
    for (size_t k = t->special_first[b]; k < t->special_first[b + 1]; k++) {
        int32_t id = t->special[k];
        if (t->type[id] == TT_CONTROL && !parse_special) continue;
        size_t l = t->text_len[id];
        if (l <= len - i && memcmp(text + i, t->text + t->text_off[id], l) == 0) return id;
    }
    return -1;
}

slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                                int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len)) return slm_error(SLM_ERR_ARG, "slm_tokenizer_encode: no tokenizer or text");
    if (len > (size_t)INT32_MAX / 8) return slm_error(SLM_ERR_ARG, "slm_tokenizer_encode: text of %zu bytes is too long", len);
    id_vec out = {0};
    bpe_scratch w = {0};
    slm_status st = SLM_OK;
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    uint8_t *fl = malloc(len + 1);
    size_t *off = malloc((len + 1) * sizeof *off);
    size_t *ends = malloc((len + 1) * sizeof *ends);
    if (!cp || !fl || !off || !ends) st = slm_error(SLM_ERR_NOMEM, "tokenizer encode: out of memory");

    if (st == SLM_OK && add_special && t->add_bos && t->bos >= 0) st = push_id(&out, t->bos);
    bool prev_special = true; /* llama: a raw fragment at the start or after a special token gets the space prefix */
    size_t start = 0;
    for (size_t i = 0; st == SLM_OK && i <= len;) {
        int32_t sp = i < len && t->n_special ? match_special(t, text, i, len, parse_special) : -1;
        if (sp < 0 && i < len) {
            i++;
            continue;
        }
        if (i > start) {
            st = encode_raw(t, &w, text + start, i - start, t->add_space_prefix && prev_special, cp, fl, off, ends, &out);
            prev_special = false;
        }
        if (sp < 0) break; /* end of text */
        if (st == SLM_OK) st = push_id(&out, sp);
        prev_special = true;
        i += t->text_len[sp];
        start = i;
    }
    if (st == SLM_OK && add_special && t->add_eos && t->eos >= 0) st = push_id(&out, t->eos);

    scratch_free(&w);
    free(cp);
    free(fl);
    free(off);
    free(ends);
    if (st != SLM_OK) {
        free(out.ids);
        return st;
    }
    if (!out.ids) { /* an empty result is still a valid allocation */
        out.ids = malloc(sizeof *out.ids);
        if (!out.ids) return slm_error(SLM_ERR_NOMEM, "tokenizer encode: out of memory");
    }
    *ids = out.ids;
    *n_ids = out.n;
    return SLM_OK;
}

slm_status slm_pretokenize(const char *pre, const char *text, size_t len, size_t **ends, size_t *n) {
    *ends = NULL;
    *n = 0;
    int kind;
    if (!strcmp(pre, "default") || !strcmp(pre, "gpt2") || !strcmp(pre, "gpt-2"))
        kind = PRE_GPT2;
    else if (!strcmp(pre, "smollm"))
        kind = PRE_SMOLLM;
    else if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3"))
        kind = PRE_LLAMA3;
    else if (!strcmp(pre, "qwen2"))
        kind = PRE_QWEN2;
    else
        return slm_error(SLM_ERR_UNSUPPORTED, "pre-tokenizer '%s' is not supported", pre);
    if (len > (size_t)INT32_MAX / 8) return slm_error(SLM_ERR_ARG, "slm_pretokenize: text too long");
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    uint8_t *fl = malloc(len + 1);
    size_t *off = malloc((len + 1) * sizeof *off);
    size_t *e = malloc((len + 1) * sizeof *e);
    if (!cp || !fl || !off || !e) {
        free(cp);
        free(fl);
        free(off);
        free(e);
        return slm_error(SLM_ERR_NOMEM, "slm_pretokenize: out of memory");
    }
    size_t ncp = decode_cps(text, len, cp, fl, off);
    size_t np = pretokenize(kind, cp, fl, ncp, e);
    for (size_t i = 0; i < np; i++) e[i] = off[e[i]];
    free(cp);
    free(fl);
    free(off);
    *ends = e;
    *n = np;
    return SLM_OK;
}

/* ---------------------------------------------------------------- decoding */

/* Append bytes to buf (cap), counting all of them. */
static void put(char *buf, size_t cap, size_t *n, const char *s, size_t l) {
    if (*n < cap) memcpy(buf + *n, s, l <= cap - *n ? l : cap - *n);
    *n += l;
}

int slm_tokenizer_piece(const slm_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    const char *s = t->text + t->text_off[id];
    size_t l = t->text_len[id], n = 0;
    switch (t->type[id]) {
    case TT_CONTROL:
    case TT_UNKNOWN:
        if (render_special) put(buf, cap, &n, s, l);
        break;
    case TT_UNUSED:
        break;
    case TT_USER:
        put(buf, cap, &n, s, l);
        break;
    case TT_BYTE:
        if (t->family == FAM_SPM && l == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>') {
            unsigned v;
            char hex[3] = {s[3], s[4], 0};
            if (sscanf(hex, "%2x", &v) == 1) {
                char c = (char)v;
                put(buf, cap, &n, &c, 1);
                break;
            }
        }
        put(buf, cap, &n, s, l);
        break;
    default:
        if (t->family == FAM_GPT2) {
            for (size_t i = 0; i < l;) {
                uint32_t cp;
                int k = slm_utf8_decode((const uint8_t *)s + i, l - i, &cp);
                if (cp < 324 && t->cp_byte[cp] >= 0) {
                    char c = (char)t->cp_byte[cp];
                    put(buf, cap, &n, &c, 1);
                } else {
                    put(buf, cap, &n, s + i, (size_t)k); /* not a byte character: as written */
                }
                i += (size_t)k;
            }
        } else {
            for (size_t i = 0; i < l;) {
                if (i + 3 <= l && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                    put(buf, cap, &n, " ", 1);
                    i += 3;
                } else {
                    put(buf, cap, &n, s + i, 1);
                    i++;
                }
            }
        }
        break;
    }
    return n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
}

/* The piece of id in a malloc'd buffer when it does not fit in small[cap]. */
static const char *piece_of(const slm_tokenizer *t, int32_t id, bool render_special, char *small, size_t cap, char **heap,
                            int *len) {
    *heap = NULL;
    int n = slm_tokenizer_piece(t, id, render_special, small, cap);
    *len = n;
    if (n <= (int)cap) return small;
    *heap = malloc((size_t)n);
    if (!*heap) {
        *len = (int)cap; /* out of memory: the truncated piece */
        return small;
    }
    slm_tokenizer_piece(t, id, render_special, *heap, (size_t)n);
    return *heap;
}

slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, size_t n_ids, bool render_special, char **out,
                                size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int l = slm_tokenizer_piece(t, ids[i], render_special, NULL, 0);
        if (l < 0) return slm_error(SLM_ERR_ARG, "slm_tokenizer_decode: token %zu has id %d outside the vocabulary", i, (int)ids[i]);
        total += (size_t)l;
    }
    char *buf = malloc(total + 1);
    if (!buf) return slm_error(SLM_ERR_NOMEM, "slm_tokenizer_decode: out of memory");
    size_t n = 0;
    bool first = true;
    for (size_t i = 0; i < n_ids; i++) {
        int l = slm_tokenizer_piece(t, ids[i], render_special, buf + n, total - n);
        /* llama: the space prefix added by encode is dropped from the first text decoded. */
        if (first && l > 0 && t->add_space_prefix && buf[n] == ' ' && t->type[ids[i]] != TT_CONTROL) {
            memmove(buf + n, buf + n + 1, (size_t)l - 1);
            l--;
            first = false;
        }
        if (l > 0) first = false;
        n += (size_t)l;
    }
    buf[n] = 0;
    *out = buf;
    *out_len = n;
    return SLM_OK;
}

/* Bytes at the end of s[0..n) that begin a UTF-8 character not yet complete (0..3). */
static size_t incomplete_tail(const char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t c = (uint8_t)s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        int need = slm_utf8_seq_len(c);
        return (need > 1 && (size_t)need > back) ? back : 0;
    }
    return 0;
}

size_t slm_detok_push(slm_detok *d, const slm_tokenizer *t, int32_t id, bool render_special, char *out, size_t cap) {
    char small[256], *heap;
    int l;
    const char *p = piece_of(t, id, render_special, small, sizeof small, &heap, &l);
    if (l < 0) l = 0;
    /* Stream = pending + piece; everything up to an incomplete trailing character goes out. */
    size_t np = (size_t)d->n_pending, total = np + (size_t)l, n = 0;
    char *joined = total <= sizeof small ? NULL : malloc(total);
    char tmp[sizeof small];
    char *s = joined ? joined : tmp;
    if (!joined && total > sizeof tmp) { /* out of memory: emit pending and the piece as they are */
        put(out, cap, &n, d->pending, np);
        put(out, cap, &n, p, (size_t)l);
        d->n_pending = 0;
        free(heap);
        return n < cap ? n : cap;
    }
    memcpy(s, d->pending, np);
    memcpy(s + np, p, (size_t)l);
    size_t keep = incomplete_tail(s, total);
    put(out, cap, &n, s, total - keep);
    memcpy(d->pending, s + total - keep, keep);
    d->n_pending = (int)keep;
    free(joined);
    free(heap);
    return n < cap ? n : cap;
}

size_t slm_detok_flush(slm_detok *d, char *out, size_t cap) {
    size_t n = 0;
    put(out, cap, &n, d->pending, (size_t)d->n_pending);
    d->n_pending = 0;
    return n < cap ? n : cap;
}
