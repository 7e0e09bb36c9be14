/* cmd_quantize.c - `slimlm quantize`: re-quantize a model's weight matrices to one of the
 * llama.cpp-compatible types and write a new GGUF file (atomically, verified). */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "slimlm.h"
#include "core/dtype.h"
#include "core/gguf.h"
#include "core/gguf_write.h"
#include "core/gq.h"
#include "compress/pack.h"
#include "compress/requant.h"
#include "core/sha256.h"
#include "core/strbuf.h"
#include "core/threadpool.h"


static const char *const usage =
    "usage: slimlm quantize -m IN -o OUT --type T [--keep RULE]... [--tensor-type NAME=T]... [-t N]\n"
    "\n"
    "Re-quantize every 2-D weight matrix (blk.*.attn_*.weight, blk.*.ffn_*.weight, token_embd.weight,\n"
    "output.weight) of a GGUF model: each is dequantized to f32 and quantized to T (round to nearest;\n"
    "the K-quants search their sub-block scales; --clip-search the group ranges). 1-D tensors (norms,\n"
    "biases) and other tensors are copied unchanged; a matrix whose row length does not fit T keeps\n"
    "its dtype or gets the fallback below (reported). All\n"
    "metadata is kept; general.file_type is set for T and slimlm.* keys record the run. Prints a\n"
    "table of dtype, size and quantization error (RMSE relative to the weights' RMS) per tensor.\n"
    "\n"
    "  -m, --model IN         input model, a GGUF or packed file (required)\n"
    "  -o, --out OUT          output file (written atomically; must differ from IN)\n"
    "  --type T               f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k,\n"
    "                         q6_k (llama.cpp-compatible; a matrix whose rows are not a multiple of\n"
    "                         256 gets q4_0 (q2_k, q3_k), q5_0 (q4_k), q5_1 (q5_k) or q8_0 (q6_k)), or a\n"
    "                         group format q<B>g<G>[a]: B bits (2, 3, 4, 8), groups of G weights (32, 64,\n"
    "                         128), 'a' for asymmetric (scale + offset), e.g. q4g128, q3g64a, q2g32a\n"
    "  --clip-search          search each group's clipping range for the least squared error instead of\n"
    "                         plain min/max (group formats, q4_0, q4_1 and q8_0)\n"
    "  --keep RULE[:T]        keep matching matrices at their input dtype (or at T); repeatable.\n"
    "                         RULE is embd (token_embd.weight), output (output.weight),\n"
    "                         layers=0,29 or layers=0-3 (every matrix of those layers), or a glob\n"
    "                         on the tensor name (blk.*.ffn_down.weight)\n"
    "  --tensor-type NAME=T   quantize tensors matching NAME (glob allowed) to T; repeatable;\n"
    "                         takes precedence over --keep\n"
    "  -t, --threads N        worker threads (default: all CPUs)\n"
    "  -q, --quiet            no progress and no per-tensor table (totals only)\n"
    "  -h, --help             this help\n";

static const char *cmd = "quantize";

/* The llama.cpp-compatible types the command produces (and every group format). */
static const uint32_t out_types[] = {SLM_DT_F32,  SLM_DT_F16,  SLM_DT_Q4_0, SLM_DT_Q4_1, SLM_DT_Q8_0,
                                     SLM_DT_Q5_0, SLM_DT_Q5_1, SLM_DT_BF16, SLM_DT_Q2_K, SLM_DT_Q3_K,
                                     SLM_DT_Q4_K, SLM_DT_Q5_K, SLM_DT_Q6_K};

#define TYPE_LIST "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, " \
                  "q<2|3|4|8>g<32|64|128>[a]"

/* A K-quant target for a matrix whose rows are not whole 256-element super-blocks falls
 * back to a 32-element block type, as llama.cpp does (f16 if even that does not fit); the
 * note names the type used. Other targets are returned unchanged. */
static int k_fallback(int t, int64_t cols, const char **note) {
    static const struct {
        int k, fb;
        const char *note;
    } map[] = {
        {SLM_DT_Q2_K, SLM_DT_Q4_0, "row length not a multiple of 256; q4_0 instead"},
        {SLM_DT_Q3_K, SLM_DT_Q4_0, "row length not a multiple of 256; q4_0 instead"},
        {SLM_DT_Q4_K, SLM_DT_Q5_0, "row length not a multiple of 256; q5_0 instead"},
        {SLM_DT_Q5_K, SLM_DT_Q5_1, "row length not a multiple of 256; q5_1 instead"},
        {SLM_DT_Q6_K, SLM_DT_Q8_0, "row length not a multiple of 256; q8_0 instead"},
    };
    if (cols % 256 == 0) return t;
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        if (map[i].k != t) continue;
        if (cols % 32 != 0) {
            *note = "row length not a multiple of 32; f16 instead";
            return SLM_DT_F16;
        }
        *note = map[i].note;
        return map[i].fb;
    }
    return t;
}

/* An output type from a name, or -1 (unknown names and types without a quantizer). */
static int parse_type(const char *name) {
    int t = slm_dtype_from_name(name);
    if (t >= 0 && slm_gq_format_of((uint32_t)t, NULL)) return t;
    for (size_t i = 0; t >= 0 && i < sizeof out_types / sizeof *out_types; i++)
        if (out_types[i] == (uint32_t)t) return t;
    return -1;
}


/* ---- rules --------------------------------------------------------------------------- */

enum { RULE_NAME, RULE_LAYERS, RULE_GLOB };

typedef struct {
    const char *text; /* as given */
    int kind;
    char pattern[256]; /* RULE_NAME: exact name; RULE_GLOB: glob */
    unsigned char layers[1024]; /* RULE_LAYERS: flags per layer index */
    int type;          /* -1: the input dtype */
    int matched;
} rule;

/* Splits "RULE:T" into the rule and a type; a suffix that is not a type name is an error. */
static bool split_type(const char *opt, const char *s, char *head, size_t cap, int *type, char sep) {
    const char *c = strrchr(s, sep);
    *type = -1;
    size_t n = c ? (size_t)(c - s) : strlen(s);
    if (c) {
        if ((*type = parse_type(c + 1)) < 0) {
            cli_fail(cmd, "%s '%s': unknown type '%s' (" TYPE_LIST ")", opt, s, c + 1);
            return false;
        }
    }
    if (n == 0 || n >= cap) {
        cli_fail(cmd, "%s '%s': empty or too long", opt, s);
        return false;
    }
    memcpy(head, s, n);
    head[n] = '\0';
    return true;
}

static bool parse_layers(const char *opt, const char *full, const char *list, rule *r) {
    const char *p = list;
    if (!*p) return cli_fail(cmd, "%s '%s': no layer numbers after 'layers='", opt, full), false;
    while (*p) {
        char *end;
        errno = 0;
        long a = strtol(p, &end, 10), b;
        if (end == p || errno || a < 0 || a >= (long)sizeof r->layers || !isdigit((unsigned char)*p))
            return cli_fail(cmd, "%s '%s': bad layer number at '%s'", opt, full, p), false;
        b = a;
        p = end;
        if (*p == '-') {
            const char *q = p + 1;
            b = strtol(q, &end, 10);
            if (end == q || errno || b < a || b >= (long)sizeof r->layers || !isdigit((unsigned char)*q))
                return cli_fail(cmd, "%s '%s': bad layer range at '%s'", opt, full, q), false;
            p = end;
        }
        for (long l = a; l <= b; l++) r->layers[l] = 1;
        if (*p == ',') p++;
        else if (*p) return cli_fail(cmd, "%s '%s': unexpected '%c' in the layer list", opt, full, *p), false;
        else break;
        if (!*p) return cli_fail(cmd, "%s '%s': trailing comma", opt, full), false;
    }
    return true;
}

static bool parse_keep(const char *s, rule *r) {
    memset(r, 0, sizeof *r);
    r->text = s;
    char head[256];
    if (!split_type("--keep", s, head, sizeof head, &r->type, ':')) return false;
    if (!strcmp(head, "embd")) {
        r->kind = RULE_NAME;
        strcpy(r->pattern, "token_embd.weight");
    } else if (!strcmp(head, "output")) {
        r->kind = RULE_NAME;
        strcpy(r->pattern, "output.weight");
    } else if (!strncmp(head, "layers=", 7)) {
        r->kind = RULE_LAYERS;
        if (!parse_layers("--keep", s, head + 7, r)) return false;
    } else {
        r->kind = RULE_GLOB;
        strcpy(r->pattern, head);
    }
    return true;
}

static bool parse_tensor_type(const char *s, rule *r) {
    memset(r, 0, sizeof *r);
    r->text = s;
    r->kind = RULE_GLOB;
    if (!strchr(s, '=')) return cli_fail(cmd, "--tensor-type '%s': expected NAME=TYPE", s), false;
    if (!split_type("--tensor-type", s, r->pattern, sizeof r->pattern, &r->type, '=')) return false;
    return true;
}

/* Layer index of "blk.N.*", or -1. */
static long layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) || !isdigit((unsigned char)name[4])) return -1;
    char *end;
    long l = strtol(name + 4, &end, 10);
    return *end == '.' ? l : -1;
}

static bool rule_matches(const rule *r, const char *name) {
    switch (r->kind) {
    case RULE_NAME: return !strcmp(r->pattern, name);
    case RULE_LAYERS: {
        long l = layer_of(name);
        return l >= 0 && l < (long)sizeof r->layers && r->layers[l];
    }
    default: return fnmatch(r->pattern, name, 0) == 0;
    }
}

/* ---- command ------------------------------------------------------------------------- */

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type_name = NULL;
    long threads = 0;
    bool quiet = false, clip_search = false;
    int n_keep = 0, n_tt = 0;
    rule *keep = calloc((size_t)argc, sizeof *keep), *tt = calloc((size_t)argc, sizeof *tt);
    int rc = 1;
    slm_gguf *g = NULL;
    slm_pool *pool = NULL;
    slm_gguf_writer *w = NULL;
    slm_rq_tensor *plans = NULL;
    int *want = NULL;
    slm_sb keep_text = {0};
    if (!keep || !tt) {
        cli_fail(cmd, "out of memory");
        goto done;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(in = cli_value(cmd, argc, argv, &i))) goto done;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--type")) {
            if (!(type_name = cli_value(cmd, argc, argv, &i))) goto done;
        } else if (!strcmp(a, "--keep")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !parse_keep(v, &keep[n_keep++])) goto done;
        } else if (!strcmp(a, "--tensor-type")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !parse_tensor_type(v, &tt[n_tt++])) goto done;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 1024, &threads)) goto done;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (!strcmp(a, "--clip-search")) {
            clip_search = true;
        } else {
            cli_fail(cmd, "unknown option '%s' (see --help)", a);
            goto done;
        }
    }
    if (!in) { cli_fail(cmd, "no input model (-m IN)"); goto done; }
    if (!out) { cli_fail(cmd, "no output file (-o OUT)"); goto done; }
    if (!type_name) { cli_fail(cmd, "no --type (" TYPE_LIST ")"); goto done; }
    int main_type = parse_type(type_name);
    if (main_type < 0) {
        cli_fail(cmd, "unknown type '%s' (" TYPE_LIST ")", type_name);
        goto done;
    }
    if (clip_search && slm_rq_gq_layout((uint32_t)main_type) < 0) {
        cli_fail(cmd, "--clip-search works with the group formats, q4_0, q4_1 and q8_0, not %s", type_name);
        goto done;
    }

    /* Input and output: checked before any work. */
    slm_status s = slm_pack_open_gguf(in, &g);
    if (s) { cli_fail_status(cmd, s); goto done; }
    if (!cli_check_output(cmd, in, out)) goto done;

    /* Targets: --tensor-type first, then --keep, then the main type for weight matrices. A
     * matrix asked for its own type is still re-quantized (it reproduces its grid). */
    size_t nt = (size_t)g->n_tensors;
    want = malloc((nt ? nt : 1) * sizeof *want);
    if (!want) { cli_fail(cmd, "out of memory"); goto done; }
    for (size_t i = 0; i < nt; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        char name[256];
        slm_gguf_str_copy(t->name, name, sizeof name);
        want[i] = -1;
        for (int r = 0; r < n_tt && want[i] < 0; r++)
            if (rule_matches(&tt[r], name)) {
                tt[r].matched++;
                want[i] = tt[r].type;
            }
        if (want[i] < 0 && slm_rq_is_weight_matrix(t, name)) {
            want[i] = main_type;
            for (int r = 0; r < n_keep; r++)
                if (rule_matches(&keep[r], name)) {
                    keep[r].matched++;
                    want[i] = keep[r].type; /* -1: the input dtype, copied */
                    break;
                }
        }
    }
    const char **fb_note = calloc(nt ? nt : 1, sizeof *fb_note);
    if (!fb_note) { cli_fail(cmd, "out of memory"); goto done; }
    for (size_t i = 0; i < nt; i++) want[i] = k_fallback(want[i], g->tensors[i].ne[0], &fb_note[i]);
    const slm_rq_opts ro = {.clip_search = clip_search, .progress = quiet ? 0 : isatty(2) ? 1 : 2, .label = cmd};
    s = slm_rq_plan(g, want, &ro, &plans);
    for (size_t i = 0; !s && i < nt; i++)
        if (fb_note[i] && !plans[i].note) plans[i].note = fb_note[i];
    free(fb_note);
    if (s) { cli_fail_status(cmd, s); goto done; }
    for (int r = 0; r < n_tt; r++)
        if (!tt[r].matched) {
            cli_fail(cmd, "--tensor-type '%s' matches no tensor", tt[r].text);
            goto done;
        }
    for (int r = 0; r < n_keep; r++) {
        if (!keep[r].matched && keep[r].kind != RULE_NAME) {
            cli_fail(cmd, "--keep '%s' matches no weight matrix", keep[r].text);
            goto done;
        }
        slm_sb_printf(&keep_text, "%s%s", r ? " " : "", keep[r].text);
    }

    if ((s = slm_pool_create((int)threads, &pool))) { cli_fail_status(cmd, s); goto done; }

    /* Metadata to the writer; tensors are converted while the file is written, one at a time
     * (the input's pages dropped as it goes). */
    char sha[65];
    slm_rq_sha256(g, sha);
    if ((s = slm_gguf_writer_create(&w)) || (s = slm_gguf_writer_copy_kvs(w, g)) ||
        (s = slm_gguf_writer_set_u32(w, "general.file_type", slm_rq_file_type((uint32_t)main_type))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.quantize.type", slm_dtype_name((uint32_t)main_type))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.quantize.keep", keep_text.p ? keep_text.p : "")) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.quantize.method", clip_search ? "clip-search"
                                                          : slm_dtype_get((uint32_t)main_type)->block_size == 256
                                                              ? "k-scale-search"
                                                              : "round-to-nearest")) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.source.sha256", sha)) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.version", SLM_VERSION))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    if (keep_text.oom) { cli_fail(cmd, "out of memory"); goto done; }
    if ((s = slm_rq_convert_write(pool, g, plans, &ro, w, out))) { cli_fail_status(cmd, s); goto done; }

    slm_rq_print_summary(stdout, plans, nt, !quiet, slm_dtype_name((uint32_t)main_type));
    printf("wrote %s\n", out);
    rc = 0;
done:
    slm_rq_free(plans, g ? (size_t)g->n_tensors : 0);
    free(want);
    slm_gguf_writer_free(w);
    slm_pool_free(pool);
    slm_gguf_free(g);
    slm_sb_free(&keep_text);
    free(keep);
    free(tt);
    return rc;
}
