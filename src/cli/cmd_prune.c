/* cmd_prune.c - `slimlm prune`: remove the weights that matter least.
 *
 * Unstructured and N:M pruning (src/compress/prune.h) zero weights of the layer matrices and
 * store them in a sparse format (or densely, for quality studies); structured pruning
 * (src/compress/prune_struct.h) removes whole FFN channels, heads, KV groups and layers and
 * writes a smaller dense model. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "compress/calib.h"
#include "compress/prune.h"
#include "compress/prune_struct.h"
#include "compress/requant.h"
#include "core/gguf_write.h"
#include "core/paths.h"
#include "core/sha256.h"
#include "core/sparse.h"
#include "slimlm.h"

static const char *const usage =
    "usage: slimlm prune [-m IN] -o OUT (--sparsity S | --pattern N:M) [--method magnitude|wanda] [options]\n"
    "       slimlm prune [-m IN] -o OUT [--ffn-keep F] [--heads-keep F] [--kv-keep F] [--drop-layers N]\n"
    "\n"
    "Removes the weights that matter least. Unstructured (--sparsity) and N:M (--pattern 2:4)\n"
    "pruning zero weights of the layer matrices (attention q/k/v/o, FFN gate/up/down; embeddings,\n"
    "output and norms are kept) by score: |w| (magnitude) or |w| x the input channel's RMS over\n"
    "calibration text (Wanda). The pruned matrices are stored in a sparse format whose kernels\n"
    "skip the removed weights. Structured pruning removes whole FFN channels, query heads, KV\n"
    "groups and layers (lowest block influence first) and writes a smaller dense model.\n"
    "Prints a table per layer.\n"
    "\n"
    "  -o, --out OUT           output file (written atomically; must differ from IN)\n"
    "unstructured and N:M:\n"
    "  --sparsity S            fraction of every layer matrix's weights removed, 0 <= S < 1\n"
    "  --pattern N:M           keep N of every M consecutive weights of a row (2:4)\n"
    "  --method M              wanda (default) or magnitude\n"
    "  --per-row / --per-matrix  compare scores within each output row (wanda's default) or over\n"
    "                          the whole matrix (magnitude's default)\n"
    "  --tensor-sparsity GLOB=S  sparsity of the matrices matching GLOB (repeatable, last match\n"
    "                          wins), e.g. 'blk.0.*=0.2' or '*.ffn_down.weight=0.3'\n"
    "  --type T                storage of the pruned matrices: sparse (default: int8 values +\n"
    "                          bitmap, or s24q8 for 2:4), sparse4 (2:4 with 4-bit values, s24q4), or\n"
    "                          a dense type (f16, f32, q8_0, ...: zeros stored, for quality studies)\n"
    "structured:\n"
    "  --ffn-keep F            fraction of FFN channels kept in every layer (rounded down to a\n"
    "                          multiple of 32)\n"
    "  --heads-keep F          fraction of the query heads of every KV group kept\n"
    "  --kv-keep F             fraction of KV groups (a KV head and its query heads) kept\n"
    "  --drop-layers N         remove the N layers of lowest block influence\n"
    "  --drop LIST             remove these layers instead (e.g. 3,7)\n"
    "  --zero-only             keep the shapes and zero what would be removed (a reference that\n"
    "                          computes the same function as the pruned model)\n"
    "  --bi-samples N          calibration windows for the block influence (default 16)\n"
    "calibration (wanda, structured):\n"
    "  --calib FILE            load statistics saved with --save-calib (here or by `slimlm awq`)\n"
    "  --save-calib FILE       save the statistics for reuse\n"
    "  --text FILE             calibration text (default ../shared/data/wikitext2-valid.txt; never\n"
    "                          the evaluation text)\n"
    "  --samples N             calibration windows (default 64)\n"
    "  --seq L                 tokens per window (default 256)\n"
    "  --seed N                window offsets (default 1)\n"
    "  -q, --quiet             no progress and no per-layer table\n"
    "  -h, --help              this help\n";

static const char *cmd = "prune";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

#define MAX_RULES 64
#define MAX_DROP 256

typedef struct {
    const char *out, *type_name, *calib_in, *calib_out, *text;
    slm_prune_opts po;
    int per_row; /* -1: the method's default */
    bool have_sparsity, quiet;
    slm_prune_rule rules[MAX_RULES];
    char rule_buf[MAX_RULES][256];
    int n_rules;
    slm_ps_params ps;
    bool structured;
    int drop_list[MAX_DROP];
    int bi_samples;
    slm_calib_params cp;
} prune_args;

static bool parse_pattern(const char *v, slm_prune_opts *o) {
    int n, m;
    char tail;
    if (sscanf(v, "%d:%d%c", &n, &m, &tail) != 2 || n < 1 || m < 2 || n >= m || m > 64) return false;
    o->nm_n = n;
    o->nm_m = m;
    return true;
}

static bool parse_rule(const char *v, prune_args *a) {
    const char *eq = strrchr(v, '=');
    if (!eq || eq == v || (size_t)(eq - v) >= sizeof a->rule_buf[0] || a->n_rules >= MAX_RULES) return false;
    char *end;
    const double s = strtod(eq + 1, &end);
    if (end == eq + 1 || *end || !(s >= 0 && s < 1)) return false;
    memcpy(a->rule_buf[a->n_rules], v, (size_t)(eq - v));
    a->rule_buf[a->n_rules][eq - v] = 0;
    a->rules[a->n_rules] = (slm_prune_rule){.glob = a->rule_buf[a->n_rules], .sparsity = s};
    a->n_rules++;
    return true;
}

static bool parse_drop(const char *v, prune_args *a) {
    int32_t *ids = NULL;
    int n = 0;
    if (!cli_parse_ids(cmd, v, &ids, &n)) return false;
    bool ok = n > 0 && n <= MAX_DROP;
    for (int i = 0; ok && i < n; i++) {
        ok = ids[i] >= 0;
        a->drop_list[i] = ids[i];
    }
    if (ok) {
        a->ps.drop_list = a->drop_list;
        a->ps.n_drop_list = n;
    }
    free(ids);
    if (!ok) cli_fail(cmd, "--drop %s: expected a list of layer numbers", v);
    return ok;
}

static bool keep_fraction(const char *flag, const char *v, float *out) {
    double d;
    if (!cli_float(cmd, flag, v, 0.0, 1.0, &d)) return false;
    if (d <= 0) {
        cli_fail(cmd, "%s %s: must be above 0", flag, v);
        return false;
    }
    *out = (float)d;
    return true;
}

/* Returns 1 = handled, 0 = not ours, -1 = error (printed). */
static int parse_flag(int argc, char **argv, int *i, prune_args *a) {
    const char *f = argv[*i], *v;
    long n;
    if (!strcmp(f, "-o") || !strcmp(f, "--out")) {
        if (!(a->out = cli_value(cmd, argc, argv, i))) return -1;
    } else if (!strcmp(f, "--sparsity")) {
        double d;
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_float(cmd, f, v, 0.0, 0.999999, &d)) return -1;
        a->po.sparsity = d;
        a->have_sparsity = true;
    } else if (!strcmp(f, "--pattern")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return -1;
        if (!parse_pattern(v, &a->po)) {
            cli_fail(cmd, "--pattern %s: expected N:M with 0 < N < M <= 64 (e.g. 2:4)", v);
            return -1;
        }
    } else if (!strcmp(f, "--method")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return -1;
        if (!strcmp(v, "magnitude")) a->po.method = SLM_PRUNE_MAGNITUDE;
        else if (!strcmp(v, "wanda")) a->po.method = SLM_PRUNE_WANDA;
        else {
            cli_fail(cmd, "--method %s: expected magnitude or wanda", v);
            return -1;
        }
    } else if (!strcmp(f, "--per-row")) {
        a->per_row = 1;
    } else if (!strcmp(f, "--per-matrix")) {
        a->per_row = 0;
    } else if (!strcmp(f, "--tensor-sparsity")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return -1;
        if (!parse_rule(v, a)) {
            cli_fail(cmd, "--tensor-sparsity %s: expected GLOB=S with 0 <= S < 1 (at most %d rules)", v, MAX_RULES);
            return -1;
        }
    } else if (!strcmp(f, "--type")) {
        if (!(a->type_name = cli_value(cmd, argc, argv, i))) return -1;
    } else if (!strcmp(f, "--ffn-keep")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !keep_fraction(f, v, &a->ps.ffn_keep)) return -1;
        a->structured = true;
    } else if (!strcmp(f, "--heads-keep")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !keep_fraction(f, v, &a->ps.heads_keep)) return -1;
        a->structured = true;
    } else if (!strcmp(f, "--kv-keep")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !keep_fraction(f, v, &a->ps.kv_keep)) return -1;
        a->structured = true;
    } else if (!strcmp(f, "--drop-layers")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, f, v, 0, MAX_DROP, &n)) return -1;
        a->ps.drop_layers = (int)n;
        a->structured = true;
    } else if (!strcmp(f, "--drop")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !parse_drop(v, a)) return -1;
        a->structured = true;
    } else if (!strcmp(f, "--zero-only")) {
        a->ps.zero_only = true;
    } else if (!strcmp(f, "--bi-samples")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, f, v, 1, 1 << 16, &n)) return -1;
        a->bi_samples = (int)n;
    } else if (!strcmp(f, "--calib")) {
        if (!(a->calib_in = cli_value(cmd, argc, argv, i))) return -1;
    } else if (!strcmp(f, "--save-calib")) {
        if (!(a->calib_out = cli_value(cmd, argc, argv, i))) return -1;
    } else if (!strcmp(f, "--text")) {
        if (!(a->text = cli_value(cmd, argc, argv, i))) return -1;
    } else if (!strcmp(f, "--samples")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, f, v, 1, 1 << 16, &n)) return -1;
        a->cp.n_samples = (int)n;
    } else if (!strcmp(f, "--seq")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, f, v, 2, 1 << 15, &n)) return -1;
        a->cp.seq_len = (int)n;
    } else if (!strcmp(f, "--seed")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, f, v, 0, 0x7fffffff, &n)) return -1;
        a->cp.seed = (uint64_t)n;
    } else if (!strcmp(f, "-q") || !strcmp(f, "--quiet")) {
        a->quiet = true;
    } else {
        return 0;
    }
    return 1;
}

/* Calibration statistics: loaded, or computed over the text (no rows kept: only the means). */
static slm_status get_calib(const prune_args *a, cli_engine *e, slm_calib **cal) {
    slm_status s;
    if (a->calib_in) {
        if ((s = slm_calib_load(a->calib_in, e->model, cal))) return s;
        if (!a->quiet)
            fprintf(stderr, "prune: calibration from %s: %" PRIu64 " tokens\n", a->calib_in, slm_calib_n_tokens(*cal));
        return SLM_OK;
    }
    slm_calib_params cp = a->cp;
    cp.text_path = a->text;
    cp.progress = !a->quiet;
    if ((s = slm_calib_run(e->ctx, e->tok, &cp, cal))) return s;
    if (a->calib_out && (s = slm_calib_save(*cal, a->calib_out))) return s;
    return SLM_OK;
}

/* The type a pruned tensor is stored in; *note explains a fallback. */
static int storage_type(const prune_args *a, int dense_type, int bits, const slm_prune_tensor *t, const char **note) {
    *note = NULL;
    if (dense_type >= 0) return dense_type;
    if (a->po.nm_m == 4 && a->po.nm_n == 2) {
        const int st = slm_sp_24_type(bits);
        if (st >= 0 && t->cols % 32 == 0) return st;
    }
    const int st = slm_sp_unstructured_type(bits, t->cols, t->max_row_kept);
    if (st >= 0) return st;
    *note = "no sparse class fits; stored as q8_0";
    return bits == 4 ? SLM_DT_Q4_0 : SLM_DT_Q8_0;
}

static int run_unstructured(prune_args *a, cli_engine *e) {
    int dense_type = -1, bits = 8;
    if (!a->type_name || !strcmp(a->type_name, "sparse")) {
        bits = 8;
    } else if (!strcmp(a->type_name, "sparse4")) {
        bits = 4;
        if (!(a->po.nm_m == 4 && a->po.nm_n == 2) && slm_sp_unstructured_type(4, 64, 32) < 0)
            return cli_fail(cmd, "--type sparse4: 4-bit values exist for the 2:4 pattern only (use --pattern 2:4)");
    } else {
        dense_type = slm_dtype_from_name(a->type_name);
        const slm_dtype_traits *tr = dense_type >= 0 ? slm_dtype_get((uint32_t)dense_type) : NULL;
        slm_sp_format f;
        if (!tr || !tr->from_float || slm_sp_format_of((uint32_t)dense_type, &f))
            return cli_fail(cmd, "--type %s: expected sparse, sparse4 or a dense type with a quantizer (f16, f32, "
                                 "q8_0, ...)", a->type_name);
    }
    int rc = 1;
    slm_calib *cal = NULL;
    slm_prune_plan *plan = NULL;
    slm_rq_tensor *ts = NULL;
    int *want = NULL;
    slm_gguf_writer *w = NULL;
    slm_status s;
    const slm_gguf *g = e->model->gguf;
    const size_t nt = (size_t)g->n_tensors;
    const double t0 = now_s();
    if (a->po.method == SLM_PRUNE_WANDA && (s = get_calib(a, e, &cal))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    const double t1 = now_s();
    if ((s = slm_prune_plan_create(g, cal, &a->po, a->rules, a->n_rules, e->ctx->pool, !a->quiet && isatty(2),
                                   &plan))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    want = malloc((nt ? nt : 1) * sizeof *want);
    const char **notes = calloc(nt ? nt : 1, sizeof *notes);
    if (!want || !notes) {
        free(notes);
        cli_fail(cmd, "out of memory");
        goto done;
    }
    uint32_t main_type = SLM_DT_F32;
    for (size_t i = 0; i < nt; i++) {
        char name[128];
        slm_gguf_str_copy(g->tensors[i].name, name, sizeof name);
        const slm_prune_tensor *t = slm_prune_plan_find(plan, name);
        want[i] = t ? storage_type(a, dense_type, bits, t, &notes[i]) : -1;
        if (t) main_type = (uint32_t)want[i];
    }
    const slm_rq_hooks hooks = slm_prune_hooks(plan);
    const slm_rq_opts ro = {.hooks = &hooks, .progress = a->quiet ? 0 : isatty(2) ? 1 : 2, .label = cmd};
    if ((s = slm_rq_plan(g, want, &ro, &ts))) {
        free(notes);
        cli_fail_status(cmd, s);
        goto done;
    }
    for (size_t i = 0; i < nt; i++)
        if (notes[i] && !ts[i].note) ts[i].note = notes[i];
    free(notes);
    char sha[65], pattern[32];
    slm_rq_sha256(g, sha); /* pages dropped as it goes; the conversion drops each tensor's after it */
    snprintf(pattern, sizeof pattern, a->po.nm_m ? "%d:%d" : "unstructured", a->po.nm_n, a->po.nm_m);
    if ((s = slm_gguf_writer_create(&w)) || (s = slm_gguf_writer_copy_kvs(w, g)) ||
        (s = slm_gguf_writer_set_u32(w, "general.file_type", slm_rq_file_type(main_type))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.prune.method",
                                     a->po.method == SLM_PRUNE_WANDA ? "wanda" : "magnitude")) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.prune.pattern", pattern)) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.prune.compare", a->po.nm_m ? "group" : a->po.per_row ? "row" : "matrix")) ||
        (s = slm_gguf_writer_set_f32(w, "slimlm.prune.sparsity",
                                     (float)(a->po.nm_m ? 1.0 - (double)a->po.nm_n / a->po.nm_m : a->po.sparsity))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.prune.storage", slm_dtype_name(main_type))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.source.sha256", sha)) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.version", SLM_VERSION)) ||
        (s = slm_rq_convert_write(e->ctx->pool, g, ts, &ro, w, a->out))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    if (!a->quiet) {
        slm_prune_report(stdout, plan, &a->po);
        slm_rq_print_summary(stdout, ts, nt, false, slm_dtype_name(main_type));
    }
    printf("prune: calibration %.1f s, total %.1f s, peak memory %.0f MiB\n", t1 - t0, now_s() - t0, peak_rss_mib());
    printf("wrote %s\n", a->out);
    rc = 0;
done:
    slm_gguf_writer_free(w);
    slm_rq_free(ts, nt);
    free(want);
    slm_prune_plan_free(plan);
    slm_calib_free(cal);
    return rc;
}

static int run_structured(prune_args *a, cli_engine *e) {
    const slm_config *cfg = &e->model->cfg;
    int rc = 1;
    slm_calib *cal = NULL;
    float *ffn = NULL, *heads = NULL;
    double *bi = NULL;
    int32_t *ids = NULL, *win = NULL;
    slm_ps_plan plan = {0};
    slm_status s;
    const double t0 = now_s();
    if ((s = slm_ps_check_model(e->model))) return cli_fail_status(cmd, s);
    const bool need_scores = a->ps.ffn_keep < 1 || a->ps.heads_keep < 1 || a->ps.kv_keep < 1;
    const bool need_bi = a->ps.drop_layers > 0 && a->ps.n_drop_list == 0;
    if (need_scores) {
        ffn = malloc((size_t)cfg->n_layers * cfg->ffn_dim * sizeof *ffn);
        heads = malloc((size_t)cfg->n_layers * cfg->n_heads * sizeof *heads);
        if (!ffn || !heads) {
            cli_fail(cmd, "out of memory");
            goto done;
        }
        if ((s = get_calib(a, e, &cal)) || (s = slm_ps_scores(e->model, cal, ffn, heads))) {
            cli_fail_status(cmd, s);
            goto done;
        }
    }
    if (need_bi) {
        char *text = NULL;
        size_t len = 0, n_ids = 0;
        if (!(text = cli_read_file(cmd, a->text, &len))) goto done;
        s = slm_tokenizer_encode(e->tok, text, len, false, false, &ids, &n_ids);
        free(text);
        slm_calib_params cp = a->cp;
        cp.n_samples = a->bi_samples;
        const int32_t bos = slm_tokenizer_add_bos(e->tok) ? slm_tokenizer_bos(e->tok) : -1;
        bi = malloc((size_t)cfg->n_layers * sizeof *bi);
        if (!s && !bi) s = slm_error(SLM_ERR_NOMEM, "out of memory");
        if (s || (s = slm_calib_windows(ids, n_ids, bos, &cp, &win)) ||
            (s = slm_ps_block_influence(e->ctx, win, cp.n_samples, cp.seq_len, !a->quiet, bi))) {
            cli_fail_status(cmd, s);
            goto done;
        }
    }
    const double t1 = now_s();
    if ((s = slm_ps_select(cfg, ffn, heads, bi, &a->ps, &plan))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    slm_ps_totals tot;
    a->ps.progress = !a->quiet;
    if ((s = slm_ps_write(e->model, &plan, &a->ps, a->out, &tot))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    if (!a->quiet) slm_ps_print_report(stdout, &plan, &tot);
    printf("prune: scores %.1f s, total %.1f s, peak memory %.0f MiB\n", t1 - t0, now_s() - t0, peak_rss_mib());
    printf("wrote %s\n", a->out);
    rc = 0;
done:
    slm_ps_plan_free(&plan);
    free(ffn);
    free(heads);
    free(bi);
    free(ids);
    free(win);
    slm_calib_free(cal);
    return rc;
}

int cmd_prune(int argc, char **argv) {
    prune_args a = {.text = "../shared/data/wikitext2-valid.txt", .per_row = -1, .bi_samples = 16,
                    .po = {.method = SLM_PRUNE_WANDA}};
    a.ps = slm_ps_params_default();
    a.cp = slm_calib_params_default();
    a.cp.keep_rows = 0; /* only the per-channel means are needed */
    cli_engine_opts eo = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            fputs(cli_engine_help, stdout);
            return 0;
        }
        int r = cli_engine_flag(cmd, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        r = parse_flag(argc, argv, &i, &a);
        if (r < 0) return 1;
        if (r == 0) return cli_fail(cmd, "unknown option '%s' (see --help)", argv[i]);
    }
    char default_path[4096];
    if (!eo.model && !(eo.model = slm_default_model_path(default_path, sizeof default_path)))
        return cli_fail(cmd, "no input model (-m IN)");
    if (!a.out) return cli_fail(cmd, "no output file (-o OUT)");
    const bool unstructured = a.have_sparsity || a.po.nm_m || a.n_rules;
    if (unstructured && a.structured)
        return cli_fail(cmd, "unstructured (--sparsity/--pattern) and structured (--ffn-keep, --heads-keep, --kv-keep, "
                             "--drop-layers, --drop) pruning are separate runs: prune twice");
    if (!unstructured && !a.structured)
        return cli_fail(cmd, "nothing to prune: give --sparsity S, --pattern N:M or a structured option (see --help)");
    if (a.have_sparsity && a.po.nm_m) return cli_fail(cmd, "--sparsity and --pattern exclude each other");
    if (a.ps.zero_only && !a.structured) return cli_fail(cmd, "--zero-only goes with structured pruning");
    if (a.structured && a.type_name) return cli_fail(cmd, "--type goes with unstructured pruning");
    if (a.ps.drop_layers > 0 && a.ps.n_drop_list > 0) return cli_fail(cmd, "--drop-layers and --drop exclude each other");
    a.po.per_row = a.per_row >= 0 ? a.per_row : a.po.method == SLM_PRUNE_WANDA;
    const bool need_text = a.structured ? ((a.ps.ffn_keep < 1 || a.ps.heads_keep < 1 || a.ps.kv_keep < 1) && !a.calib_in) ||
                                              (a.ps.drop_layers > 0)
                                        : a.po.method == SLM_PRUNE_WANDA && !a.calib_in;
    if (need_text && access(a.text, R_OK) != 0)
        return cli_fail(cmd, "calibration text %s is not readable (use --text FILE%s)", a.text,
                        a.structured && a.ps.drop_layers > 0 ? "" : " or --calib FILE");
    if (!cli_check_output(cmd, eo.model, a.out)) return 1;
    if (a.calib_out && !strcmp(a.calib_out, a.out)) return cli_fail(cmd, "--save-calib and -o name the same file");

    eo.ctx.n_ctx = a.cp.seq_len;
    eo.ctx.max_batch = a.cp.seq_len < 256 ? a.cp.seq_len : 256;
    cli_engine e;
    if (!cli_engine_load(cmd, &eo, true, &e)) return 1;
    if (e.model->n_shared || e.model->max_delta_rank || e.model->n_kv_layers != e.model->cfg.n_layers) {
        cli_engine_free(&e);
        return cli_fail(cmd, "%s shares weights or keys across layers; prune the model before `slimlm share`", eo.model);
    }
    const int rc = a.structured ? run_structured(&a, &e) : run_unstructured(&a, &e);
    cli_engine_free(&e);
    return rc;
}
