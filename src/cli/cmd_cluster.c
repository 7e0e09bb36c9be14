/* cmd_cluster.c - `slimlm cluster`: rewrite the weight matrices of a model in a per-row
 * codebook format (k-means of each row's weights, optionally weighted by calibration
 * statistics); writes a GGUF model that every other command runs unchanged. */
#include <fnmatch.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "slimlm.h"
#include "compress/calib.h"
#include "compress/cluster.h"
#include "compress/pack.h"
#include "compress/requant.h"
#include "core/cbt.h"
#include "core/codebook.h"
#include "core/gguf.h"
#include "core/gguf_write.h"
#include "core/paths.h"
#include "core/sha256.h"
#include "core/threadpool.h"

static const char *const usage =
    "usage: slimlm cluster -m IN -o OUT [--k K] [--weighted [--calib FILE | --text FILE]]\n"
    "                      [--outliers P] [options]\n"
    "\n"
    "Weight clustering of every layer matrix (blk.*.attn_*.weight, blk.*.ffn_*.weight); IN is a\n"
    "GGUF or packed file. Each weight is stored as an index into a codebook of K int8 levels under\n"
    "an f16 row scale:\n"
    "  K = 4, 8, 16         every row has its own codebook from 1-D k-means of its weights\n"
    "                       (formats cb4 / cb8 / cb16: 2, 3, 4-bit indices)\n"
    "  K = 32, 64, 128, 256 one codebook per matrix (cbt32 .. cbt256: 5 .. 8-bit indices, the table\n"
    "                       stored once as <name>.codebook), its levels the optimal K integers for\n"
    "                       all the matrix's rows, each row scaled to its largest weight\n"
    "Matrix products look the levels up in the table and take 8-bit activations. token_embd and\n"
    "output keep their input dtype. Exact zeros of a pruned matrix keep a level of their own.\n"
    "Prints per tensor K, bits per weight and the error (RMSE relative to the weights' RMS).\n"
    "\n"
    "  -o, --out OUT        output file (written atomically; must differ from IN)\n"
    "  --k K                codebook entries: 4, 8, 16 (per row) or 32, 64, 128, 256 (per matrix;\n"
    "                       default 16)\n"
    "  --outliers P         keep the fraction P of each matrix's weights exactly, outside the\n"
    "                       codebook (largest |w|, times sqrt of the channel importance with\n"
    "                       --weighted), in a sparse side table added to the product; P as a\n"
    "                       fraction (0.005) or a percentage (0.5%); default 0\n"
    "  --weighted           weight each input channel's error by the calibration mean x^2 of that\n"
    "                       channel (SqueezeLLM-style weighted k-means)\n"
    "  --calib FILE         calibration statistics saved by `slimlm awq --save-calib` (implies\n"
    "                       --weighted)\n"
    "  --text FILE          calibration text for --weighted (default\n"
    "                       ../shared/data/wikitext2-valid.txt; never the evaluation text)\n"
    "  --samples N          calibration windows of 256 tokens for --text (default 32)\n"
    "  --save-calib FILE    save the statistics computed from --text (for --calib)\n"
    "  --seed N             k-means++ draws and calibration windows (default 1)\n"
    "  --keep PATTERN       keep matrices whose name matches the glob at their input dtype\n"
    "                       (repeatable), e.g. 'blk.0.*' or '*.ffn_down.weight'\n"
    "  -q, --quiet          no progress and no per-tensor table (totals only)\n"
    "  -h, --help           this help\n";

static const char *cmd = "cluster";

static void print_table(const slm_rq_tensor *ts, size_t nt) {
    printf("%-28s %-15s %3s %8s %10s\n", "tensor", "dtype", "k", "bits/w", "rel rmse");
    for (size_t i = 0; i < nt; i++) {
        const slm_rq_tensor *p = &ts[i];
        if (!p->convert) continue;
        slm_cb_format f;
        char dt[40];
        snprintf(dt, sizeof dt, "%s -> %s", slm_dtype_name(p->in_type), slm_dtype_name(p->out_type));
        slm_cbt_format ft;
        const int k = slm_cb_format_of(p->out_type, &f) ? f.k : slm_cbt_format_of(p->out_type, &ft) ? ft.k : 0;
        size_t xb = 0;
        for (int e = 0; e < p->n_extra; e++) xb += p->extra[e].bytes;
        printf("%-28s %-15s %3d %8.3f %10.6f\n", p->name, dt, k,
               p->n ? 8.0 * (double)(p->out_bytes + xb) / (double)p->n : 0.0,
               p->ref2 > 0 ? sqrt(p->err2 / p->ref2) : 0.0);
    }
}

int cmd_cluster(int argc, char **argv) {
    const char *out = NULL, *calib_in = NULL, *calib_out = NULL, *text = NULL;
    long k = 16, v, samples = 32, seed = 1;
    double outliers = 0.0;
    bool weighted = false, quiet = false;
    cli_engine_opts eo = {0};
    int n_keep = 0;
    const char **keep = calloc((size_t)argc, sizeof *keep);
    if (!keep) return cli_fail(cmd, "out of memory");
    int rc = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        const int r = cli_engine_flag(cmd, argc, argv, &i, &eo);
        if (r < 0) goto early;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            fputs(cli_engine_help, stdout);
            rc = 0;
            goto early;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) goto early;
        } else if (!strcmp(a, "--k")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 2, 256, &k)) goto early;
        } else if (!strcmp(a, "--outliers")) {
            if (!(val = cli_value(cmd, argc, argv, &i))) goto early;
            char *end;
            outliers = strtod(val, &end);
            if (end != val && *end == '%' && end[1] == '\0') {
                outliers /= 100.0;
            } else if (end == val || *end) {
                cli_fail(cmd, "--outliers '%s': expected a fraction (0.005) or a percentage (0.5%%)", val);
                goto early;
            }
            if (!(outliers >= 0.0 && outliers <= 0.5)) {
                cli_fail(cmd, "--outliers '%s': must lie in [0, 50%%]", val);
                goto early;
            }
        } else if (!strcmp(a, "--weighted")) {
            weighted = true;
        } else if (!strcmp(a, "--calib")) {
            if (!(calib_in = cli_value(cmd, argc, argv, &i))) goto early;
            weighted = true;
        } else if (!strcmp(a, "--save-calib")) {
            if (!(calib_out = cli_value(cmd, argc, argv, &i))) goto early;
        } else if (!strcmp(a, "--text")) {
            if (!(text = cli_value(cmd, argc, argv, &i))) goto early;
        } else if (!strcmp(a, "--samples")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 1, 1 << 16, &samples)) goto early;
        } else if (!strcmp(a, "--seed")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 0, 0x7fffffff, &v)) goto early;
            seed = v;
        } else if (!strcmp(a, "--keep")) {
            if (!(keep[n_keep++] = cli_value(cmd, argc, argv, &i))) goto early;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else {
            cli_fail(cmd, "unknown option '%s' (see --help)", a);
            goto early;
        }
    }
    const int type = slm_cb_type((int)k) >= 0 ? slm_cb_type((int)k) : slm_cbt_type((int)k);
    if (type < 0) {
        cli_fail(cmd, "--k %ld: the codebook formats have 4, 8, 16, 32, 64, 128 or 256 entries", k);
        goto early;
    }
    if (calib_in && text) {
        cli_fail(cmd, "--calib and --text exclude each other");
        goto early;
    }
    if (text && !weighted) {
        cli_fail(cmd, "--text is the calibration text of --weighted");
        goto early;
    }
    if (weighted && !calib_in && !text) text = "../shared/data/wikitext2-valid.txt";
    if (calib_out && !text) {
        cli_fail(cmd, "--save-calib saves statistics computed from --text (with --weighted)");
        goto early;
    }
    if (text && access(text, R_OK) != 0) {
        cli_fail(cmd, "calibration text %s is not readable (use --text FILE or --calib FILE)", text);
        goto early;
    }
    char default_path[4096];
    if (!eo.model && !(eo.model = slm_default_model_path(default_path, sizeof default_path))) {
        cli_fail(cmd, "no input model (-m IN)");
        goto early;
    }
    if (!out) {
        cli_fail(cmd, "no output file (-o OUT)");
        goto early;
    }
    if (!cli_check_output(cmd, eo.model, out)) goto early;
    if (calib_out && !strcmp(calib_out, out)) {
        cli_fail(cmd, "--save-calib and -o name the same file");
        goto early;
    }

    slm_calib_params cp = slm_calib_params_default();
    cp.n_samples = (int)samples;
    cp.seed = (uint64_t)seed;
    cp.keep_rows = 0; /* only the channel means are used: no sampled rows */
    cli_engine e = {0};
    slm_pool *pool = NULL;
    slm_gguf *g = NULL;
    slm_calib *cal = NULL;
    slm_rq_tensor *ts = NULL;
    int *want = NULL;
    slm_gguf_writer *w = NULL;
    slm_status s;
    if (weighted) {
        eo.ctx.n_ctx = cp.seq_len;
        eo.ctx.max_batch = cp.seq_len;
        if (!cli_engine_load(cmd, &eo, true, &e)) goto early;
        if (calib_in) {
            if ((s = slm_calib_load(calib_in, e.model, &cal))) { cli_fail_status(cmd, s); goto done; }
        } else {
            cp.text_path = text;
            cp.progress = !quiet;
            if ((s = slm_calib_run(e.ctx, e.tok, &cp, &cal))) { cli_fail_status(cmd, s); goto done; }
            if (calib_out && (s = slm_calib_save(cal, calib_out))) { cli_fail_status(cmd, s); goto done; }
        }
    } else if ((s = slm_pool_create(eo.ctx.n_threads, &pool))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    if ((s = slm_pack_open_gguf(eo.model, &g))) { cli_fail_status(cmd, s); goto done; }

    /* Targets: every layer matrix not kept; token_embd and output keep their dtype. */
    const size_t nt = (size_t)g->n_tensors;
    want = malloc((nt ? nt : 1) * sizeof *want);
    int *matched = calloc((size_t)(n_keep ? n_keep : 1), sizeof *matched);
    if (!want || !matched) {
        free(matched);
        cli_fail(cmd, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nt; i++) {
        char name[256];
        slm_gguf_str_copy(g->tensors[i].name, name, sizeof name);
        const bool embd = !strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight");
        want[i] = slm_rq_is_weight_matrix(&g->tensors[i], name) && !embd ? type : -1;
        for (int r = 0; r < n_keep; r++)
            if (fnmatch(keep[r], name, 0) == 0) {
                matched[r]++;
                want[i] = -1;
            }
    }
    for (int r = 0; r < n_keep; r++)
        if (!matched[r]) {
            free(matched);
            cli_fail(cmd, "--keep '%s' matches no tensor", keep[r]);
            goto done;
        }
    free(matched);
    const slm_rq_opts ro = {.hook_types = true};
    if ((s = slm_rq_plan(g, want, &ro, &ts))) { cli_fail_status(cmd, s); goto done; }
    const slm_cluster_opts co = {.calib = cal, .seed = (uint64_t)seed, .outliers = outliers,
                                 .progress = quiet ? 0 : isatty(2) ? 1 : 2, .label = cmd};
    if ((s = slm_cluster_plan(ts, nt, &co))) { cli_fail_status(cmd, s); goto done; }
    if (weighted) slm_rq_drop_all(e.model->gguf); /* calibration is done: its pages are not read again */

    char sha[65];
    slm_rq_sha256(g, sha);
    if ((s = slm_gguf_writer_create(&w)) || (s = slm_gguf_writer_copy_kvs(w, g)) ||
        (s = slm_gguf_writer_set_u32(w, "general.file_type", slm_rq_file_type((uint32_t)type))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.quantize.type", slm_dtype_name((uint32_t)type))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.quantize.method", weighted ? "kmeans-weighted" : "kmeans")) ||
        (s = slm_gguf_writer_set_u32(w, "slimlm.cluster.k", (uint32_t)k)) ||
        (s = slm_gguf_writer_set_u32(w, "slimlm.cluster.seed", (uint32_t)seed)) ||
        (outliers > 0 && (s = slm_gguf_writer_set_f32(w, "slimlm.cluster.outliers", (float)outliers))) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.source.sha256", sha)) ||
        (s = slm_gguf_writer_set_str(w, "slimlm.version", SLM_VERSION)) ||
        (s = slm_cluster_convert_write(weighted ? e.ctx->pool : pool, g, ts, &co, w, out))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    if (!quiet) print_table(ts, nt);
    slm_rq_print_summary(stdout, ts, nt, false, slm_dtype_name((uint32_t)type));
    printf("wrote %s\n", out);
    rc = 0;
done:
    slm_gguf_writer_free(w);
    slm_rq_free(ts, g ? (size_t)g->n_tensors : 0);
    free(want);
    slm_gguf_free(g);
    slm_calib_free(cal);
    slm_pool_free(pool);
    if (weighted) cli_engine_free(&e);
early:
    free(keep);
    return rc;
}
