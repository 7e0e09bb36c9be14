/* test_recipe.c - recipe parsing and validation (comments, blank lines, quoting, line numbers
 * in errors, refused flags, values), and the step hashes (their documented definition,
 * stability under formatting, sensitivity to content). */
#include <string.h>

#include "compress/recipe.h"
#include "core/sha256.h"
#include "core/strbuf.h"
#include "test.h"

static const char *const SHA_A = "9ac94dad7fda2648b8c12c5f1f470c78efb99fd253646b7853e61dd42e1ed477";
static const char *const SHA_B = "0000000000000000000000000000000000000000000000000000000000000000";

static slm_status parse(const char *text, slm_recipe *r) { return slm_recipe_parse(text, strlen(text), "r.txt", r); }

/* The error message of parsing text ("" when it parses). */
static const char *err_of(const char *text) {
    slm_recipe r;
    if (parse(text, &r) == SLM_OK) {
        slm_recipe_free(&r);
        return "";
    }
    return slm_last_error();
}

static bool starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

static void test_basic(void) {
    slm_recipe r;
    const char *text = "# prune, heal, quantize, pack\n"
                       "\n"
                       "prune --method wanda --sparsity 0.5   # half the weights\n"
                       "   \t\n"
                       "distill --tokens 65536 --loss kl\r\n"
                       "awq --bits 4 --group 128\n"
                       "pack --codec auto";
    slm_status s = parse(text, &r);
    CHECK(s == SLM_OK, "parse: %s", slm_last_error());
    if (s) return;
    CHECK(r.n_steps == 4, "4 steps, got %d", r.n_steps);
    CHECK(r.steps[0].kind == SLM_STEP_PRUNE && r.steps[0].line == 3, "prune on line 3 (%d)", r.steps[0].line);
    CHECK(r.steps[1].kind == SLM_STEP_DISTILL && r.steps[1].line == 5, "distill on line 5 (%d)", r.steps[1].line);
    CHECK(r.steps[2].kind == SLM_STEP_AWQ && r.steps[2].line == 6, "awq on line 6");
    CHECK(r.steps[3].kind == SLM_STEP_PACK && r.steps[3].line == 7, "pack on line 7 (no final newline)");
    CHECK(r.steps[0].argc == 4 && !strcmp(r.steps[0].argv[3], "0.5"), "prune args without the comment");
    CHECK(!strcmp(r.steps[0].canon, "prune --method wanda --sparsity 0.5"), "canonical '%s'", r.steps[0].canon);
    CHECK(r.steps[1].argc == 4 && !strcmp(r.steps[1].argv[3], "kl"), "CR stripped: '%s'", r.steps[1].argv[3]);
    CHECK(r.steps[0].calib && !r.steps[0].calib_rows && !r.steps[0].reshapes, "wanda prune calibrates, keeps shapes");
    CHECK(r.steps[1].reshapes && !r.steps[1].calib, "distill reshapes");
    CHECK(r.steps[2].calib && r.steps[2].calib_rows, "awq needs rows");
    CHECK(!r.steps[3].calib, "pack does not calibrate");
    CHECK(!strcmp(slm_recipe_flag(&r.steps[0], "--sparsity"), "0.5"), "flag lookup");
    CHECK(slm_recipe_flag(&r.steps[0], "--pattern") == NULL, "absent flag");
    slm_recipe_free(&r);

    s = parse("prune --sparsity 0.2 --method magnitude\ncluster --k 8\ncluster --weighted\nprune --ffn-keep 0.5\n"
              "prune --ffn-keep 0.5 --zero-only\n", &r);
    CHECK(s == SLM_OK, "parse 2: %s", slm_last_error());
    if (!s) {
        CHECK(!r.steps[0].calib, "magnitude prune needs no calibration");
        CHECK(!r.steps[1].calib && r.steps[2].calib, "cluster calibrates only with --weighted");
        CHECK(r.steps[3].calib && r.steps[3].reshapes, "structured prune reshapes");
        CHECK(!r.steps[4].reshapes, "--zero-only keeps the shapes");
        CHECK(!strcmp(slm_recipe_flag(&r.steps[2], "--weighted"), ""), "switch present: \"\"");
        slm_recipe_free(&r);
    }
}

static void test_quoting(void) {
    slm_recipe r;
    slm_status s = parse("quantize --type q4_0 --keep 'blk.0.*' --tensor-type \"*.ffn_down.weight=q8_0\"\n"
                         "quantize --type q8_0 --keep \"a b\" --keep 'it''s' --keep \"q\\\"x\\\\y\" --keep a#b\n",
                         &r);
    CHECK(s == SLM_OK, "quoted: %s", slm_last_error());
    if (s) return;
    CHECK(!strcmp(r.steps[0].argv[3], "blk.0.*"), "single quotes: '%s'", r.steps[0].argv[3]);
    CHECK(!strcmp(r.steps[0].argv[5], "*.ffn_down.weight=q8_0"), "double quotes");
    CHECK(!strcmp(r.steps[1].argv[3], "a b"), "blank inside quotes: '%s'", r.steps[1].argv[3]);
    CHECK(!strcmp(r.steps[1].argv[5], "its"), "adjacent quoted parts join: '%s'", r.steps[1].argv[5]);
    CHECK(!strcmp(r.steps[1].argv[7], "q\"x\\y"), "escapes in double quotes: '%s'", r.steps[1].argv[7]);
    CHECK(!strcmp(r.steps[1].argv[9], "a#b"), "'#' inside a word is not a comment: '%s'", r.steps[1].argv[9]);
    CHECK(!strcmp(r.steps[1].canon, "quantize --type q8_0 --keep \"a b\" --keep its --keep \"q\\\"x\\\\y\" --keep \"a#b\""),
          "canonical quoting: %s", r.steps[1].canon);
    /* the canonical text parses back to the same tokens */
    slm_recipe r2;
    s = parse(r.steps[1].canon, &r2);
    CHECK(s == SLM_OK, "canonical text parses: %s", slm_last_error());
    if (!s) {
        bool same = r2.steps[0].argc == r.steps[1].argc;
        for (int i = 0; same && i < r2.steps[0].argc; i++) same = !strcmp(r2.steps[0].argv[i], r.steps[1].argv[i]);
        CHECK(same, "round trip of the canonical text");
        slm_recipe_free(&r2);
    }
    slm_recipe_free(&r);
}

static void test_errors(void) {
    const char *e;
    e = err_of("# x\nquantize --type q4_0\nsqueeze --hard\n");
    CHECK(starts(e, "r.txt:3: unknown step 'squeeze'"), "unknown step: %s", e);
    e = err_of("\n\nawq --bitz 4\n");
    CHECK(starts(e, "r.txt:3: awq: unknown flag '--bitz'"), "unknown flag: %s", e);
    e = err_of("awq --bits 5\n");
    CHECK(starts(e, "r.txt:1: awq --bits: '5' is not one of 2|3|4|8"), "bad enum: %s", e);
    e = err_of("quantize --type q4_0\nprune --sparsity 1.5\n");
    CHECK(starts(e, "r.txt:2: prune --sparsity: '1.5' is not a number"), "float out of range: %s", e);
    e = err_of("prune --sparsity abc\n");
    CHECK(starts(e, "r.txt:1: prune --sparsity: 'abc'"), "not a number: %s", e);
    e = err_of("pack --level 20\n");
    CHECK(starts(e, "r.txt:1: pack --level: '20' is not an integer in [1, 19]"), "int out of range: %s", e);
    e = err_of("pack --level 3x\n");
    CHECK(starts(e, "r.txt:1: pack --level: '3x'"), "trailing junk: %s", e);
    e = err_of("quantize --type q9_9\n");
    CHECK(starts(e, "r.txt:1: quantize --type: unknown type 'q9_9'"), "bad type: %s", e);
    e = err_of("quantize\n");
    CHECK(starts(e, "r.txt:1: quantize: --type T is required"), "missing --type: %s", e);
    e = err_of("quantize --type\n");
    CHECK(starts(e, "r.txt:1: quantize: --type needs a value"), "missing value: %s", e);
    e = err_of("quantize --type q4_0 extra\n");
    CHECK(starts(e, "r.txt:1: quantize: unexpected argument 'extra'"), "stray word: %s", e);
    e = err_of("quantize --type 'q4_0\n");
    CHECK(starts(e, "r.txt:1: unterminated single quote"), "unterminated quote: %s", e);
    e = err_of("prune --sparsity 0.5 --ffn-keep 0.5\n");
    CHECK(starts(e, "r.txt:1: prune: give --sparsity"), "both prune kinds: %s", e);
    e = err_of("pack\nquantize --type q4_0\n");
    CHECK(starts(e, "r.txt:2: quantize after pack"), "pack not last: %s", e);
    e = err_of("quantize --type q4_0\ndistill --keep-layers 0-3\n");
    CHECK(starts(e, "r.txt:2: distill: --keep-layers"), "own student after the first step: %s", e);
    e = err_of("distill --keep-layers 0-3 --tokens 100\nquantize --type q4_0\n");
    CHECK(!*e, "own student as the first step: %s", e);
    e = err_of("# only a comment\n\n");
    CHECK(starts(e, "r.txt: no steps"), "empty recipe: %s", e);
    e = err_of("");
    CHECK(starts(e, "r.txt: no steps"), "empty text: %s", e);
    slm_recipe r;
    CHECK(slm_recipe_parse("pack\0x", 6, "r.txt", &r) != SLM_OK && strstr(slm_last_error(), "NUL"), "NUL byte");
    /* flags the runner owns */
    const char *owned[] = {"quantize --type q4_0 -m x.gguf",        "quantize --type q4_0 --model x",
                           "quantize --type q4_0 -o y.gguf",        "awq --out y",
                           "awq --calib c.bin",                     "prune --sparsity 0.5 --save-calib c.bin",
                           "distill --teacher t.gguf",              "distill --student s.gguf",
                           "quantize --type q4_0 -t 4",             "pack -q"};
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++) {
        char text[128];
        snprintf(text, sizeof text, "# owned\n%s\n", owned[i]);
        e = err_of(text);
        CHECK(starts(e, "r.txt:2: ") && strstr(e, "is set by `slimlm compress`"), "'%s' refused: %s", owned[i], e);
    }
    /* every message is one line */
    e = err_of("awq --bits 5\n");
    CHECK(!strchr(e, '\n'), "one line");
}

/* The documented definition: SHA-256 of "slimlm recipe v1\ninput SHA\n" and the canonical
 * lines of steps 1..k, each followed by "\n". */
static void ref_hash(const char *input, const char *const *lines, int k, char out[65]) {
    slm_sb b = {0};
    slm_sb_printf(&b, "slimlm recipe v1\ninput %s\n", input);
    for (int i = 0; i <= k; i++) slm_sb_printf(&b, "%s\n", lines[i]);
    slm_sha256_hex(b.p, b.len, out);
    slm_sb_free(&b);
}

static void test_hash(void) {
    slm_recipe a, b, c, d;
    const char *const canon[] = {"prune --sparsity 0.5", "awq --bits 4 --group 128", "pack --codec auto"};
    CHECK(parse("prune --sparsity 0.5\nawq --bits 4 --group 128\npack --codec auto\n", &a) == SLM_OK, "a");
    /* the same steps with comments, blank lines, other blanks and quotes */
    CHECK(parse("# heading\n\nprune   --sparsity '0.5'\t# half\nawq --bits \"4\" --group 128\n\npack --codec auto", &b) ==
              SLM_OK,
          "b");
    /* a different value in the second line */
    CHECK(parse("prune --sparsity 0.5\nawq --bits 3 --group 128\npack --codec auto\n", &c) == SLM_OK, "c");
    /* flags in another order: another text, another hash */
    CHECK(parse("prune --sparsity 0.5\nawq --group 128 --bits 4\npack --codec auto\n", &d) == SLM_OK, "d");
    char ha[3][65], hb[65], hc[65], hd[65], ref[65];
    for (int k = 0; k < 3; k++) {
        slm_recipe_hash(&a, k, SHA_A, ha[k]);
        ref_hash(SHA_A, canon, k, ref);
        CHECK(!strcmp(ha[k], ref), "step %d hash follows its definition", k + 1);
        slm_recipe_hash(&b, k, SHA_A, hb);
        CHECK(!strcmp(ha[k], hb), "step %d: formatting does not change the hash", k + 1);
        slm_recipe_hash(&c, k, SHA_A, hc);
        CHECK(k == 0 ? !strcmp(ha[k], hc) : strcmp(ha[k], hc) != 0, "step %d: a change on line 2 %s", k + 1,
              k == 0 ? "keeps step 1's hash" : "changes this hash");
        slm_recipe_hash(&d, k, SHA_A, hd);
        CHECK(k == 0 ? !strcmp(ha[k], hd) : strcmp(ha[k], hd) != 0, "step %d: flag order", k + 1);
        slm_recipe_hash(&a, k, SHA_B, hc);
        CHECK(strcmp(ha[k], hc) != 0, "step %d: another input, another hash", k + 1);
    }
    CHECK(strcmp(ha[0], ha[1]) && strcmp(ha[1], ha[2]), "steps differ");
    char again[65];
    slm_recipe_hash(&a, 2, SHA_A, again);
    CHECK(!strcmp(again, ha[2]), "stable");
    char k1[256], k2[256];
    slm_recipe_calib_key(&a.steps[0], k1, sizeof k1);
    slm_recipe_calib_key(&a.steps[1], k2, sizeof k2);
    CHECK(!strcmp(k1, k2), "default calibration flags share a key: %s / %s", k1, k2);
    slm_recipe_free(&a);
    slm_recipe_free(&b);
    slm_recipe_free(&c);
    slm_recipe_free(&d);
    CHECK(parse("prune --sparsity 0.5 --samples 8\nawq --bits 4\n", &a) == SLM_OK, "e");
    slm_recipe_calib_key(&a.steps[0], k1, sizeof k1);
    slm_recipe_calib_key(&a.steps[1], k2, sizeof k2);
    CHECK(strcmp(k1, k2) != 0, "other windows, other key");
    slm_recipe_free(&a);
}

int main(void) {
    test_basic();
    test_quoting();
    test_errors();
    test_hash();
    return test_summary("recipe");
}
