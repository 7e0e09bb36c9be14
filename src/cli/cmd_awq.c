/* cmd_awq.c - `slimlm awq`: calibrate, search activation-aware scales, fold them into the
 * model and quantize; writes a normal GGUF model that every other command runs unchanged. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "slimlm.h"
#include "compress/awq.h"
#include "compress/calib.h"
#include "compress/pack.h"
#include "compress/requant.h"
#include "core/gguf.h"
#include "core/gguf_write.h"
#include "core/gq.h"
#include "core/paths.h"
#include "core/sha256.h"

static const char *const usage =
    "usage: slimlm awq [-m IN] -o OUT [--bits B] [--group G] [--sym] [options]\n"
    "\n"
    "Activation-aware weight quantization. Runs the model over calibration text, records the\n"
    "inputs of every linear layer, and for each group of linears sharing an input (q/k/v, gate/up,\n"
    "o, down) searches per-channel scales s = mean|x|^alpha (alpha on a grid over [0, 1)) that\n"
    "minimize the quantized layer's output error on the recorded inputs. The scales are folded\n"
    "into the preceding norm or linear, so the model keeps its architecture and runs at no extra\n"
    "cost; then the weight matrices are quantized. Prints the chosen alpha and the error reduction\n"
    "per layer.\n"
    "\n"
    "  -m, --model IN       input model, a GGUF or packed file (default: the fetched\n"
    "                       SmolLM2-135M-Instruct)\n"
    "  -o, --out OUT        output file (written atomically; must differ from IN)\n"
    "  --bits B             4, 3, 2 or 8 (default 4)\n"
    "  --group G            32, 64 or 128 weights per scale (default 128)\n"
    "  --sym                symmetric scales (default: asymmetric, scale + offset per group)\n"
    "  --type T             quantize to T instead (q4_0, q4_1, q8_0, q5_0, q5_1, or a group format)\n"
    "  --clip-search        also search each group's clipping range, weighting the error by the\n"
    "                       calibration inputs' mean square (group formats, q4_0, q4_1, q8_0)\n"
    "  --calib FILE         load calibration statistics (made with --save-calib) instead of running\n"
    "  --save-calib FILE    save the calibration statistics for reuse\n"
    "  --text FILE          calibration text (default ../shared/data/wikitext2-valid.txt; never the\n"
    "                       evaluation text)\n"
    "  --samples N          calibration windows (default 64)\n"
    "  --seq L              tokens per window (default 256)\n"
    "  --keep-rows N        input rows kept per layer input for the search (default 512)\n"
    "  --grid N             alpha values searched (default 20)\n"
    "  --seed N             window offsets and row sampling (default 1)\n"
    "  --quantize-embd      also quantize token_embd and output (default: kept at their input type,\n"
    "                       as AWQ leaves the embeddings and the output head alone)\n"
    "  --fold-only          fold the scales but do not quantize: write f32 weights (the folded model\n"
    "                       computes the same function as the input; a check of the folding)\n"
    "  -q, --quiet          no progress and no per-layer table\n"
    "  -h, --help           this help\n";

static const char *cmd = "awq";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0.0;
}

typedef struct {
    const slm_awq_result *r;
    const slm_calib *cal;
} fold_ctx;

static bool hook_affects(void *u, const char *name) { return slm_awq_affects(((fold_ctx *)u)->r, name); }
static void hook_fold(void *u, const char *name, int64_t row, float *x, int64_t n) {
    slm_awq_fold_row(((fold_ctx *)u)->r, name, row, x, n);
}
static const float *hook_importance(void *u, const char *name, float *buf, int64_t n) {
    const fold_ctx *f = u;
    return slm_awq_importance(f->r, f->cal, name, buf, n);
}

static const char *const group_names[SLM_AWQ_N_GROUPS] = {"qkv", "gate/up", "o", "down"};

static void print_report(const slm_awq_result *r) {
    printf("%-6s", "layer");
    for (int g = 0; g < SLM_AWQ_N_GROUPS; g++) printf("  %7s alpha  err/plain", group_names[g]);
    printf("\n");
    double tot[SLM_AWQ_N_GROUPS][2] = {{0}};
    for (int l = 0; l < r->n_layers; l++) {
        printf("%-6d", l);
        for (int g = 0; g < SLM_AWQ_N_GROUPS; g++) {
            const slm_awq_choice *c = &r->g[l * SLM_AWQ_N_GROUPS + g];
            printf("  %13.2f  %9.3f", c->alpha, c->err_rtn > 0 ? c->err / c->err_rtn : 1.0);
            tot[g][0] += c->err;
            tot[g][1] += c->err_rtn;
        }
        printf("\n");
    }
    printf("%-6s", "all");
    for (int g = 0; g < SLM_AWQ_N_GROUPS; g++) printf("  %13s  %9.3f", "", tot[g][1] > 0 ? tot[g][0] / tot[g][1] : 1.0);
    printf("\n");
}

int cmd_awq(int argc, char **argv) {
    const char *out = NULL, *type_name = NULL, *calib_in = NULL, *calib_out = NULL;
    const char *text = "../shared/data/wikitext2-valid.txt";
    long bits = 4, group = 128, v;
    bool sym = false, quiet = false, clip = false, fold_only = false, quant_embd = false;
    cli_engine_opts eo = {0};
    slm_calib_params cp = slm_calib_params_default();
    slm_awq_params ap = {.grid = 20};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        const int r = cli_engine_flag(cmd, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            fputs(cli_engine_help, stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--bits")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 2, 8, &bits)) return 1;
        } else if (!strcmp(a, "--group")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 32, 128, &group)) return 1;
        } else if (!strcmp(a, "--sym")) {
            sym = true;
        } else if (!strcmp(a, "--type")) {
            if (!(type_name = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--clip-search")) {
            clip = true;
        } else if (!strcmp(a, "--calib")) {
            if (!(calib_in = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--save-calib")) {
            if (!(calib_out = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--text")) {
            if (!(text = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--samples")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 1, 1 << 16, &v)) return 1;
            cp.n_samples = (int)v;
        } else if (!strcmp(a, "--seq")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 2, 1 << 15, &v)) return 1;
            cp.seq_len = (int)v;
        } else if (!strcmp(a, "--keep-rows")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 1, SLM_CALIB_MAX_KEEP, &v)) return 1;
            cp.keep_rows = (int)v;
        } else if (!strcmp(a, "--grid")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 1, 1000, &v)) return 1;
            ap.grid = (int)v;
        } else if (!strcmp(a, "--seed")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 0, 0x7fffffff, &v)) return 1;
            cp.seed = (uint64_t)v;
        } else if (!strcmp(a, "--quantize-embd")) {
            quant_embd = true;
        } else if (!strcmp(a, "--fold-only")) {
            fold_only = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
    }
    char default_path[4096];
    if (!eo.model && !(eo.model = slm_default_model_path(default_path, sizeof default_path)))
        return cli_fail(cmd, "no input model (-m IN)");
    if (!out) return cli_fail(cmd, "no output file (-o OUT)");
    int type;
    if (type_name) {
        type = slm_dtype_from_name(type_name);
        const slm_dtype_traits *tr = type >= 0 ? slm_dtype_get((uint32_t)type) : NULL;
        if (!tr || !tr->from_float || tr->block_size == 1)
            return cli_fail(cmd, "--type %s: not a quantized type with a quantizer (q4_0, q4_1, q5_0, q5_1, q8_0, "
                                 "q<2|3|4|8>g<32|64|128>[a])", type_name);
    } else {
        type = slm_gq_type((int)bits, (int)group, !sym);
        if (type < 0) return cli_fail(cmd, "--bits %ld --group %ld: bits must be 2, 3, 4 or 8 and the group 32, 64 or 128", bits, group);
    }
    if (clip && slm_rq_gq_layout((uint32_t)type) < 0)
        return cli_fail(cmd, "--clip-search works with the group formats, q4_0, q4_1 and q8_0, not %s",
                        slm_dtype_name((uint32_t)type));
    if (!calib_in && access(text, R_OK) != 0)
        return cli_fail(cmd, "calibration text %s is not readable (use --text FILE or --calib FILE)", text);
    if (!cli_check_output(cmd, eo.model, out)) return 1;
    if (calib_out && !strcmp(calib_out, out)) return cli_fail(cmd, "--save-calib and -o name the same file");

    /* The model with a context long enough for one calibration window. */
    eo.ctx.n_ctx = cp.seq_len;
    eo.ctx.max_batch = cp.seq_len < 256 ? cp.seq_len : 256;
    cli_engine e;
    if (!cli_engine_load(cmd, &eo, true, &e)) return 1;
    if (e.model->n_shared || e.model->max_delta_rank || e.model->n_kv_layers != e.model->cfg.n_layers) {
        cli_engine_free(&e);
        return cli_fail(cmd, "%s shares weights or keys across layers; run awq on the model before `slimlm share`", eo.model);
    }
    int rc = 1;
    slm_gguf *g = NULL;
    slm_calib *cal = NULL;
    slm_awq_result res = {0};
    slm_rq_tensor *ts = NULL;
    int *want = NULL;
    slm_gguf_writer *w = NULL;
    slm_status s;

    const double t0 = now_s();
    if (calib_in) {
        if ((s = slm_calib_load(calib_in, e.model, &cal))) { cli_fail_status(cmd, s); goto done; }
        if (!quiet)
            fprintf(stderr, "awq: calibration from %s: %" PRIu64 " tokens, %d rows kept per input\n", calib_in,
                    slm_calib_n_tokens(cal), slm_calib_keep_rows(cal));
    } else {
        cp.text_path = text;
        cp.progress = !quiet;
        if ((s = slm_calib_run(e.ctx, e.tok, &cp, &cal))) { cli_fail_status(cmd, s); goto done; }
        if (calib_out && (s = slm_calib_save(cal, calib_out))) { cli_fail_status(cmd, s); goto done; }
    }
    const double t1 = now_s();
    if (!quiet)
        fprintf(stderr, "awq: calibration %.1f s (%d windows of %d tokens), peak memory %.0f MiB\n", t1 - t0,
                slm_calib_n_samples(cal), slm_calib_seq_len(cal), peak_rss_mib());

    ap.type = (uint32_t)type;
    ap.progress = !quiet;
    if ((s = slm_awq_search(e.model, cal, e.ctx->pool, &ap, &res))) { cli_fail_status(cmd, s); goto done; }
    const double t2 = now_s();
    if (!quiet) fprintf(stderr, "awq: search %.1f s, peak memory %.0f MiB\n", t2 - t1, peak_rss_mib());

    /* Rewrite: every weight matrix to the type (or f32 with --fold-only), folded tensors too. */
    if ((s = slm_pack_open_gguf(eo.model, &g))) { cli_fail_status(cmd, s); goto done; }
    const size_t nt = (size_t)g->n_tensors;
    want = malloc((nt ? nt : 1) * sizeof *want);
    if (!want) { cli_fail(cmd, "out of memory"); goto done; }
    for (size_t i = 0; i < nt; i++) {
        char name[256];
        slm_gguf_str_copy(g->tensors[i].name, name, sizeof name);
        const bool embd = !strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight");
        want[i] = slm_rq_is_weight_matrix(&g->tensors[i], name) && (quant_embd || !embd)
                      ? (fold_only ? SLM_DT_F32 : type)
                      : -1;
    }
    fold_ctx fc = {.r = &res, .cal = cal};
    const slm_rq_hooks hooks = {.user = &fc, .affects = hook_affects, .fold_row = hook_fold,
                                .importance = hook_importance};
    const slm_rq_opts ro = {.clip_search = clip && !fold_only, .hooks = &hooks,
                            .progress = quiet ? 0 : isatty(2) ? 1 : 2, .label = cmd};
    if ((s = slm_rq_plan(g, want, &ro, &ts))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    /* The model's weights are not read again: drop their pages (file-backed, read back on
     * demand) before the tensors are streamed to the output. */
    slm_rq_drop_all(e.model->gguf);
    char sha[65], method[64];
    slm_rq_sha256(g, sha);
    snprintf(method, sizeof method, "awq%s%s", clip ? "+clip-search" : "", fold_only ? " (folded, not quantized)" : "");
    const uint32_t out_type = fold_only ? SLM_DT_F32 : (uint32_t)type;
    if ((s = slm_gguf_writer_create(&w)) || (s = slm_gguf_writer_copy_kvs(w, g)) ||
        (s = slm_gguf_writer_set_u32(w, "general.file_type", slm_rq_file_type(out_type))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.quantize.type", slm_dtype_name(out_type))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.quantize.method", method)) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.awq.search_type", slm_dtype_name((uint32_t)type))) ||
        (s = slm_gguf_writer_set_u32(w, "slimlm.awq.grid", (uint32_t)ap.grid)) ||
        (s = slm_gguf_writer_set_u32(w, "slimlm.awq.calib_windows", (uint32_t)slm_calib_n_samples(cal))) ||
        (s = slm_gguf_writer_set_u32(w, "slimlm.awq.calib_seq", (uint32_t)slm_calib_seq_len(cal))) ||
        (s = slm_gguf_writer_set_u64(w, "slimlm.awq.calib_tokens", slm_calib_n_tokens(cal))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.source.sha256", sha)) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.version", SLM_VERSION)) ||
        (s = slm_rq_convert_write(e.ctx->pool, g, ts, &ro, w, out))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    if (!quiet) {
        print_report(&res);
        slm_rq_print_summary(stdout, ts, nt, false, slm_dtype_name(out_type));
    }
    printf("awq: calibration %.1f s, search %.1f s, total %.1f s, peak memory %.0f MiB\n", t1 - t0, t2 - t1,
           now_s() - t0, peak_rss_mib());
    printf("wrote %s\n", out);
    rc = 0;
done:
    slm_gguf_writer_free(w);
    slm_rq_free(ts, g ? (size_t)g->n_tensors : 0);
    free(want);
    slm_gguf_free(g);
    slm_awq_result_free(&res);
    slm_calib_free(cal);
    cli_engine_free(&e);
    return rc;
}
