/* recipe.c - recipe parsing, validation against per-step flag tables, step hashes. */
#include "recipe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dtype.h"
#include "../core/sha256.h"
#include "../core/strbuf.h"

/* ---- flag tables ---- */

typedef enum {
    V_NONE,  /* a switch */
    V_INT,   /* integer in [lo, hi] */
    V_FLOAT, /* number in [lo, hi] */
    V_ENUM,  /* one of the '|'-separated words of choices */
    V_TYPE,  /* a dtype name (core/dtype) */
    V_STR,   /* any non-empty text (paths, globs, lists) */
    V_OWNED  /* set by the runner: refused in a recipe */
} vkind;

typedef struct {
    const char *name;  /* "--sparsity"; aliases are separate entries */
    vkind kind;
    double lo, hi;
    const char *choices;
} flag_spec;

#define END {NULL, V_NONE, 0, 0, NULL}
#define ISA {"--isa", V_ENUM, 0, 0, "avx512|avx2|scalar|ref"}
#define KV {"--kv-type", V_ENUM, 0, 0, "f16|f32"}
#define OWNED(n) {n, V_OWNED, 0, 0, NULL}
/* Flags the runner sets (input, output, calibration files, threads, verbosity). */
#define RUNNER_FLAGS OWNED("-m"), OWNED("--model"), OWNED("-o"), OWNED("--out"), OWNED("-t"), OWNED("--threads"), \
                     OWNED("-q"), OWNED("--quiet"), OWNED("-h"), OWNED("--help")
#define SEED {"--seed", V_INT, 0, 2147483647.0, NULL}

static const flag_spec prune_flags[] = {
    RUNNER_FLAGS, OWNED("--calib"), OWNED("--save-calib"),
    {"--sparsity", V_FLOAT, 0, 0.999999, NULL},
    {"--pattern", V_STR, 0, 0, NULL},
    {"--method", V_ENUM, 0, 0, "wanda|magnitude"},
    {"--per-row", V_NONE, 0, 0, NULL},
    {"--per-matrix", V_NONE, 0, 0, NULL},
    {"--tensor-sparsity", V_STR, 0, 0, NULL},
    {"--type", V_STR, 0, 0, NULL},
    {"--ffn-keep", V_FLOAT, 0, 1, NULL},
    {"--heads-keep", V_FLOAT, 0, 1, NULL},
    {"--kv-keep", V_FLOAT, 0, 1, NULL},
    {"--drop-layers", V_INT, 0, 4096, NULL},
    {"--drop", V_STR, 0, 0, NULL},
    {"--zero-only", V_NONE, 0, 0, NULL},
    {"--bi-samples", V_INT, 1, 65536, NULL},
    {"--text", V_STR, 0, 0, NULL},
    {"--samples", V_INT, 1, 65536, NULL},
    {"--seq", V_INT, 2, 32768, NULL},
    SEED, KV, ISA, END};

static const flag_spec distill_flags[] = {
    RUNNER_FLAGS, OWNED("--teacher"), OWNED("--student"), OWNED("--resume"), OWNED("--stop-after"),
    {"--keep-layers", V_STR, 0, 0, NULL},
    {"--every-other", V_NONE, 0, 0, NULL},
    {"--drop-block", V_INT, 1, 4096, NULL},
    {"--data", V_STR, 0, 0, NULL},
    {"--tokens", V_INT, 1, 1e12, NULL},
    {"--seq", V_INT, 2, 32768, NULL},
    {"--batch", V_INT, 1, 65536, NULL},
    {"--accum", V_INT, 1, 65536, NULL},
    {"--gen-frac", V_FLOAT, 0, 1, NULL},
    {"--loss", V_ENUM, 0, 0, "kl|rkl|ce|mix"},
    {"--temp", V_FLOAT, 1e-6, 1e6, NULL},
    {"--ce-weight", V_FLOAT, 0, 1, NULL},
    {"--lr", V_FLOAT, 0, 1e3, NULL},
    {"--min-lr", V_FLOAT, 0, 1e3, NULL},
    {"--warmup", V_INT, 0, 1e9, NULL},
    {"--wd", V_FLOAT, 0, 1e3, NULL},
    {"--clip", V_FLOAT, 0, 1e9, NULL},
    {"--lora", V_INT, 1, 65536, NULL},
    {"--lora-alpha", V_FLOAT, 0, 1e9, NULL},
    {"--freeze-embd", V_NONE, 0, 0, NULL},
    {"--type", V_TYPE, 0, 0, NULL},
    {"--ckpt", V_STR, 0, 0, NULL},
    {"--ckpt-every", V_INT, 1, 1e9, NULL},
    {"--log", V_STR, 0, 0, NULL},
    {"--eval-every", V_INT, 1, 1e9, NULL},
    {"--eval-tokens", V_INT, 1, 1e12, NULL},
    SEED, END};

static const flag_spec awq_flags[] = {
    RUNNER_FLAGS, OWNED("--calib"), OWNED("--save-calib"),
    {"--bits", V_ENUM, 0, 0, "2|3|4|8"},
    {"--group", V_ENUM, 0, 0, "32|64|128"},
    {"--sym", V_NONE, 0, 0, NULL},
    {"--type", V_TYPE, 0, 0, NULL},
    {"--clip-search", V_NONE, 0, 0, NULL},
    {"--text", V_STR, 0, 0, NULL},
    {"--samples", V_INT, 1, 65536, NULL},
    {"--seq", V_INT, 2, 32768, NULL},
    {"--keep-rows", V_INT, 1, 1 << 20, NULL},
    {"--grid", V_INT, 1, 1000, NULL},
    {"--quantize-embd", V_NONE, 0, 0, NULL},
    {"--fold-only", V_NONE, 0, 0, NULL},
    SEED, KV, ISA, END};

static const flag_spec quantize_flags[] = {
    RUNNER_FLAGS,
    {"--type", V_TYPE, 0, 0, NULL},
    {"--clip-search", V_NONE, 0, 0, NULL},
    {"--keep", V_STR, 0, 0, NULL},
    {"--tensor-type", V_STR, 0, 0, NULL},
    END};

static const flag_spec cluster_flags[] = {
    RUNNER_FLAGS, OWNED("--calib"), OWNED("--save-calib"),
    {"--k", V_ENUM, 0, 0, "4|8|16|32|64|128|256"},
    {"--outliers", V_FLOAT, 0, 0.5, NULL}, /* a fraction here (the command also takes "0.5%") */
    {"--weighted", V_NONE, 0, 0, NULL},
    {"--text", V_STR, 0, 0, NULL},
    {"--samples", V_INT, 1, 65536, NULL},
    {"--keep", V_STR, 0, 0, NULL},
    SEED, KV, ISA, END};

static const flag_spec pack_flags[] = {
    RUNNER_FLAGS,
    {"--codec", V_ENUM, 0, 0, "auto|zstd|own|raw"},
    {"--level", V_INT, 1, 19, NULL},
    END};

static const struct {
    const char *name;
    const flag_spec *flags;
} steps[SLM_STEP_COUNT] = {
    [SLM_STEP_PRUNE] = {"prune", prune_flags},       [SLM_STEP_DISTILL] = {"distill", distill_flags},
    [SLM_STEP_AWQ] = {"awq", awq_flags},             [SLM_STEP_QUANTIZE] = {"quantize", quantize_flags},
    [SLM_STEP_CLUSTER] = {"cluster", cluster_flags}, [SLM_STEP_PACK] = {"pack", pack_flags},
};

const char *slm_step_name(slm_step_kind k) { return k < SLM_STEP_COUNT ? steps[k].name : "?"; }

static const flag_spec *find_flag(const flag_spec *t, const char *name) {
    for (; t->name; t++)
        if (!strcmp(t->name, name)) return t;
    return NULL;
}

static bool word_in(const char *word, const char *choices) {
    size_t n = strlen(word);
    for (const char *c = choices; *c;) {
        const char *e = strchr(c, '|');
        size_t l = e ? (size_t)(e - c) : strlen(c);
        if (l == n && !strncmp(c, word, n)) return true;
        if (!e) break;
        c = e + 1;
    }
    return false;
}

/* One line's message: "NAME:LINE: text". */
#define FAIL(...) slm_error(SLM_ERR_ARG, __VA_ARGS__)

static slm_status check_value(const char *name, int line, const char *step, const flag_spec *f, const char *v) {
    char *end;
    switch (f->kind) {
    case V_INT: {
        errno = 0;
        double x = (double)strtoll(v, &end, 10);
        if (errno || end == v || *end || x < f->lo || x > f->hi)
            return FAIL("%s:%d: %s %s: '%s' is not an integer in [%.0f, %.0f]", name, line, step, f->name, v, f->lo,
                        f->hi);
        return SLM_OK;
    }
    case V_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !(x >= f->lo && x <= f->hi))
            return FAIL("%s:%d: %s %s: '%s' is not a number in [%g, %g]", name, line, step, f->name, v, f->lo, f->hi);
        return SLM_OK;
    }
    case V_ENUM:
        if (!word_in(v, f->choices))
            return FAIL("%s:%d: %s %s: '%s' is not one of %s", name, line, step, f->name, v, f->choices);
        return SLM_OK;
    case V_TYPE:
        if (slm_dtype_from_name(v) < 0)
            return FAIL("%s:%d: %s %s: unknown type '%s'", name, line, step, f->name, v);
        return SLM_OK;
    case V_STR:
        if (!*v) return FAIL("%s:%d: %s %s: empty value", name, line, step, f->name);
        return SLM_OK;
    default:
        return SLM_OK;
    }
}

/* ---- tokenizing ---- */

/* Split one line into tokens (malloc'd); '#' outside quotes ends it. */
static slm_status split_line(const char *s, size_t n, const char *name, int line, char ***out, int *count) {
    char **tok = NULL;
    int nt = 0;
    slm_sb cur = {0};
    slm_status st = SLM_OK;
    size_t i = 0;
    *out = NULL;
    *count = 0;
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
        if (i >= n || s[i] == '#') break;
        slm_sb_printf(&cur, "%s", ""); /* a token may be empty ('') */
        while (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != '\r') {
            char c = s[i];
            if (c == '\'' || c == '"') {
                size_t j = i + 1;
                for (; j < n && s[j] != c; j++) {
                    if (c == '"' && s[j] == '\\' && j + 1 < n && (s[j + 1] == '"' || s[j + 1] == '\\')) j++;
                    slm_sb_printf(&cur, "%c", s[j]);
                }
                if (j >= n) {
                    st = FAIL("%s:%d: unterminated %s quote", name, line, c == '"' ? "double" : "single");
                    goto fail;
                }
                i = j + 1;
            } else {
                slm_sb_printf(&cur, "%c", c);
                i++;
            }
        }
        if (nt == SLM_RECIPE_MAX_ARGS + 1) {
            st = FAIL("%s:%d: more than %d arguments", name, line, SLM_RECIPE_MAX_ARGS);
            goto fail;
        }
        char **nt2 = realloc(tok, (size_t)(nt + 1) * sizeof *tok);
        if (!nt2 || cur.oom) {
            st = slm_error(SLM_ERR_NOMEM, "%s:%d: out of memory", name, line);
            goto fail;
        }
        tok = nt2;
        tok[nt++] = cur.p;
        cur = (slm_sb){0};
    }
    *out = tok;
    *count = nt;
    return SLM_OK;
fail:
    slm_sb_free(&cur);
    for (int k = 0; k < nt; k++) free(tok[k]);
    free(tok);
    return st;
}

/* A token as written in canonical text: bare when it has no blanks, quotes, '#' or '\'. */
static void canon_token(slm_sb *b, const char *t) {
    bool bare = *t != 0;
    for (const char *c = t; *c; c++)
        if (*c == ' ' || *c == '\t' || *c == '\'' || *c == '"' || *c == '#' || *c == '\\') bare = false;
    if (bare) {
        slm_sb_printf(b, "%s", t);
        return;
    }
    slm_sb_printf(b, "\"");
    for (const char *c = t; *c; c++) slm_sb_printf(b, (*c == '"' || *c == '\\') ? "\\%c" : "%c", *c);
    slm_sb_printf(b, "\"");
}

/* ---- validation of one step ---- */

static bool has(const slm_recipe_step *s, const char *flag) { return slm_recipe_flag(s, flag) != NULL; }

static slm_status check_step(slm_recipe_step *s, const char *name) {
    const char *sn = steps[s->kind].name;
    const flag_spec *table = steps[s->kind].flags;
    for (int i = 0; i < s->argc; i++) {
        const char *a = s->argv[i];
        const flag_spec *f = find_flag(table, a);
        if (!f) {
            if (a[0] != '-') return FAIL("%s:%d: %s: unexpected argument '%s' (flags only)", name, s->line, sn, a);
            return FAIL("%s:%d: %s: unknown flag '%s' (see slimlm %s --help)", name, s->line, sn, a, sn);
        }
        if (f->kind == V_OWNED)
            return FAIL("%s:%d: %s: %s is set by `slimlm compress`, not in a recipe", name, s->line, sn, a);
        if (f->kind == V_NONE) continue;
        if (i + 1 >= s->argc) return FAIL("%s:%d: %s: %s needs a value", name, s->line, sn, a);
        slm_status st = check_value(name, s->line, sn, f, s->argv[++i]);
        if (st) return st;
    }
    switch (s->kind) {
    case SLM_STEP_PRUNE: {
        bool structured = has(s, "--ffn-keep") || has(s, "--heads-keep") || has(s, "--kv-keep") ||
                          has(s, "--drop-layers") || has(s, "--drop");
        bool unstructured = has(s, "--sparsity") || has(s, "--pattern");
        if (structured == unstructured)
            return FAIL("%s:%d: prune: give --sparsity or --pattern, or structured flags (--ffn-keep ...), not both",
                        name, s->line);
        const char *m = slm_recipe_flag(s, "--method");
        s->calib = structured || !m || strcmp(m, "magnitude") != 0;
        s->reshapes = structured && !has(s, "--zero-only");
        break;
    }
    case SLM_STEP_DISTILL:
        s->own_student = has(s, "--keep-layers") || has(s, "--every-other") || has(s, "--drop-block");
        s->reshapes = true;
        break;
    case SLM_STEP_AWQ:
        s->calib = s->calib_rows = true;
        break;
    case SLM_STEP_QUANTIZE:
        if (!has(s, "--type")) return FAIL("%s:%d: quantize: --type T is required", name, s->line);
        break;
    case SLM_STEP_CLUSTER:
        s->calib = has(s, "--weighted");
        break;
    default:
        break;
    }
    return SLM_OK;
}

/* ---- the whole recipe ---- */

static void step_free(slm_recipe_step *s) {
    for (int i = 0; i < s->argc; i++) free(s->argv[i]);
    free(s->argv);
    free(s->canon);
    memset(s, 0, sizeof *s);
}

void slm_recipe_free(slm_recipe *r) {
    if (!r) return;
    for (int i = 0; i < r->n_steps; i++) step_free(&r->steps[i]);
    r->n_steps = 0;
}

static slm_status parse_line(slm_recipe *r, const char *s, size_t n, const char *name, int line) {
    char **tok;
    int nt;
    slm_status st = split_line(s, n, name, line, &tok, &nt);
    if (st) return st;
    if (nt == 0) {
        free(tok);
        return SLM_OK;
    }
    int kind = -1;
    for (int k = 0; k < SLM_STEP_COUNT; k++)
        if (!strcmp(tok[0], steps[k].name)) kind = k;
    if (kind < 0) {
        st = FAIL("%s:%d: unknown step '%s' (prune, distill, awq, quantize, cluster, pack)", name, line, tok[0]);
    } else if (r->n_steps == SLM_RECIPE_MAX_STEPS) {
        st = FAIL("%s:%d: more than %d steps", name, line, SLM_RECIPE_MAX_STEPS);
    } else if (r->n_steps > 0 && r->steps[r->n_steps - 1].kind == SLM_STEP_PACK) {
        st = FAIL("%s:%d: %s after pack: pack must be the last step", name, line, tok[0]);
    }
    if (st) {
        for (int i = 0; i < nt; i++) free(tok[i]);
        free(tok);
        return st;
    }
    slm_recipe_step *p = &r->steps[r->n_steps++];
    memset(p, 0, sizeof *p);
    p->kind = (slm_step_kind)kind;
    p->line = line;
    p->argc = nt - 1;
    p->argv = tok;
    free(tok[0]);
    memmove(tok, tok + 1, (size_t)(nt - 1) * sizeof *tok);
    slm_sb c = {0};
    slm_sb_printf(&c, "%s", steps[kind].name);
    for (int i = 0; i < p->argc; i++) {
        slm_sb_printf(&c, " ");
        canon_token(&c, p->argv[i]);
    }
    if (c.oom) {
        slm_sb_free(&c);
        return slm_error(SLM_ERR_NOMEM, "%s:%d: out of memory", name, line);
    }
    p->canon = c.p;
    return check_step(p, name);
}

slm_status slm_recipe_parse(const char *text, size_t len, const char *name, slm_recipe *r) {
    memset(r, 0, sizeof *r);
    if (memchr(text, 0, len)) return FAIL("%s: contains a NUL byte (not a text file)", name);
    int line = 0;
    for (size_t i = 0; i < len || (i == 0 && len == 0);) {
        line++;
        const char *e = memchr(text + i, '\n', len - i);
        size_t n = e ? (size_t)(e - (text + i)) : len - i;
        slm_status st = parse_line(r, text + i, n, name, line);
        if (st) {
            slm_recipe_free(r);
            return st;
        }
        i += n + 1;
        if (!e) break;
    }
    if (r->n_steps == 0) return FAIL("%s: no steps", name);
    for (int i = 1; i < r->n_steps; i++) {
        const slm_recipe_step *s = &r->steps[i];
        if (s->kind == SLM_STEP_DISTILL && s->own_student) {
            slm_status st = FAIL("%s:%d: distill: --keep-layers, --every-other and --drop-block choose the student "
                                 "from the original model, so only in the first step",
                                 name, s->line);
            slm_recipe_free(r);
            return st;
        }
    }
    return SLM_OK;
}

slm_status slm_recipe_load(const char *path, slm_recipe *r) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f) return slm_error(SLM_ERR_IO, "%s: %s", path, strerror(errno));
    slm_sb b = {0};
    char buf[4096];
    size_t n, total = 0;
    slm_sb_printf(&b, "%s", "");
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        total += n;
        if (total > (1u << 20)) {
            fclose(f);
            slm_sb_free(&b);
            return slm_error(SLM_ERR_FORMAT, "%s: larger than 1 MiB: not a recipe", path);
        }
        slm_sb_printf(&b, "%.*s", (int)n, buf);
        if (memchr(buf, 0, n)) {
            fclose(f);
            slm_sb_free(&b);
            return FAIL("%s: contains a NUL byte (not a text file)", path);
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (err || b.oom) {
        slm_sb_free(&b);
        return slm_error(err ? SLM_ERR_IO : SLM_ERR_NOMEM, "%s: read failed", path);
    }
    slm_status st = slm_recipe_parse(b.p, b.len, path, r);
    slm_sb_free(&b);
    return st;
}

const char *slm_recipe_flag(const slm_recipe_step *s, const char *flag) {
    const char *v = NULL;
    for (int i = 0; i < s->argc; i++) {
        const flag_spec *g = find_flag(steps[s->kind].flags, s->argv[i]);
        bool takes = g && g->kind != V_NONE;
        bool match = !strcmp(s->argv[i], flag);
        if (takes) {
            if (match && i + 1 < s->argc) v = s->argv[i + 1];
            i++;
        } else if (match) {
            v = "";
        }
    }
    return v;
}

void slm_recipe_hash(const slm_recipe *r, int k, const char input_sha[65], char out[65]) {
    slm_sha256 c;
    slm_sha256_init(&c);
    static const char head[] = "slimlm recipe v1\ninput ";
    slm_sha256_update(&c, head, sizeof head - 1);
    slm_sha256_update(&c, input_sha, strnlen(input_sha, 64));
    slm_sha256_update(&c, "\n", 1);
    for (int i = 0; i <= k && i < r->n_steps; i++) {
        slm_sha256_update(&c, r->steps[i].canon, strlen(r->steps[i].canon));
        slm_sha256_update(&c, "\n", 1);
    }
    uint8_t d[32];
    slm_sha256_final(&c, d);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

void slm_recipe_calib_key(const slm_recipe_step *s, char *buf, size_t cap) {
    const char *t = slm_recipe_flag(s, "--text"), *n = slm_recipe_flag(s, "--samples");
    const char *q = slm_recipe_flag(s, "--seq"), *d = slm_recipe_flag(s, "--seed");
    snprintf(buf, cap, "text=%s samples=%s seq=%s seed=%s", t ? t : "", n ? n : "", q ? q : "", d ? d : "");
}
