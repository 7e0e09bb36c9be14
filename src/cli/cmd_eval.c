/* cmd_eval.c - `slimlm eval`: size and quality of several models side by side, against an
 * optional base model whose top-k file is computed once and cached. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "core/atomic_file.h"
#include "core/paths.h"
#include "core/sha256.h"
#include "core/strbuf.h"
#include "eval/bench.h"
#include "eval/perplexity.h"
#include "eval/report.h"

static const char *const usage =
    "usage: slimlm eval [-m] MODEL [[-m] MODEL2 ...] [--base ORIG] -f TEXT [options]\n"
    "\n"
    "One row per model: file size, bits per weight (all tensors, and the 2-D weight matrices\n"
    "only), perplexity on TEXT (the same windows for every model, as `slimlm perplexity`), and\n"
    "with --base: KL(base||model) mean and p99, top-1 agreement with the base and the\n"
    "perplexity ratio. The base model is a row too; its KL columns show '-' (not measured),\n"
    "and its perplexity is the one recorded in its top-k file. With --pp / --tg: prompt and\n"
    "generation speed. Peak memory: the process's peak resident size (VmHWM, which counts the\n"
    "weight pages read from the mapped file) while that model was loaded and evaluated; the\n"
    "kernel's peak is reset before each model (/proc/self/clear_refs), so one run measures each\n"
    "model on its own. JSON also has peak_delta_mib: the same minus the resident size before\n"
    "loading (the model's own share). The table shows it beside the speed columns.\n"
    "\n"
    "The base's top-k file is computed once and cached in\n"
    "${SLIMLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slimlm}/klbase/, named by the SHA-256 of\n"
    "the base model's digest, the text's digest, --ctx, --chunks, top-k and --kv-type. A cached\n"
    "file whose digest does not match its record is deleted and computed again.\n"
    "\n"
    "  -m, --model PATH     a model to evaluate (repeat for several, or give the paths without\n"
    "                       -m; default: the fetched\n"
    "                       SmolLM2-135M-Instruct)\n"
    "  --base PATH          the reference model for KL and top-1 agreement\n"
    "  -f, --file PATH      text to evaluate (e.g. ../shared/data/wikitext2-test.txt)\n"
    "  --ctx N              window size in tokens (default 512)\n"
    "  --chunks N           evaluate only the first N windows (default: all)\n"
    "  --tg N               also measure generation speed tgN, median of 3 runs (default 0: off)\n"
    "  --pp N               also measure prompt speed ppN (N tokens in one pass), median of 3\n"
    "                       runs (default 0: off; 512 is the usual pp512)\n"
    "  --no-cache           compute the base file in a temporary directory, ignore the cache\n"
    "  --json FILE          also write all rows as JSON (written atomically)\n"
    "  --csv FILE           also write all rows as CSV (written atomically)\n"
    "  -t, --threads N      worker threads (default: all CPUs)\n"
    "  --kv-type T          KV cache element type: f16 (default) or f32\n"
    "  --isa NAME           kernels: avx512, avx2, scalar, or ref (default: the best this CPU has)\n"
    "  -h, --help           this help\n"
    "\n"
    "The table goes to stdout, progress to stderr.\n";

#define MAX_MODELS 64
#define BASE_TOP_K 32
#define TG_REPS 3

static const char *cmd = "eval";

typedef struct {
    cli_engine_opts eo;
    const char *text_path;
    const char *text;
    size_t text_len;
    slm_ppl_params pp;
    int tg, pp_tokens;
    /* filled from the first context created */
    char isa[32];
    int threads;
    int n_windows; /* windows evaluated */
} eval_opts;

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

static bool check_readable(const char *path) {
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f) return cli_fail(cmd, "%s: %s", path, strerror(errno)), false;
    bool reg = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode);
    fclose(f);
    if (!reg) return cli_fail(cmd, "%s: not a regular file", path), false;
    return true;
}

/* Load one model; fill the size fields; with ppl, evaluate the text (saving or comparing
 * against a base file as pp says); with o->tg, measure generation speed. *res receives the
 * perplexity result. Returns false after printing an error. */
static bool eval_model(eval_opts *o, const char *path, bool ppl, const char *save, const char *kl,
                       slm_report_row *row, slm_ppl_result *res) {
    cli_engine_opts eo = o->eo;
    eo.model = path;
    eo.ctx.n_ctx = o->pp.n_ctx > o->tg ? o->pp.n_ctx : o->tg;
    if (o->pp_tokens > eo.ctx.n_ctx) eo.ctx.n_ctx = o->pp_tokens;
    eo.ctx.max_batch = o->pp.n_ctx < 512 ? o->pp.n_ctx : 512;
    if (o->pp_tokens > eo.ctx.max_batch) eo.ctx.max_batch = o->pp_tokens < 512 ? o->pp_tokens : 512;
    uint64_t rss0 = 0, hwm = 0;
    bool mem = slm_mem_reset_peak() && slm_mem_read(&rss0, &hwm);
    cli_engine e;
    if (!cli_engine_load(cmd, &eo, ppl, &e)) return false;
    if (!o->isa[0]) {
        snprintf(o->isa, sizeof o->isa, "%s", slm_isa_name(e.ctx->isa));
        o->threads = slm_pool_size(e.ctx->pool);
    }
    bool ok = false;
    int32_t *ids = NULL;
    slm_status s = slm_report_size(e.model, path, row);
    if (s) {
        cli_fail_status(cmd, s);
        goto out;
    }
    if (ppl) {
        size_t n;
        if ((s = slm_tokenizer_encode(e.tok, o->text, o->text_len, true, false, &ids, &n))) {
            cli_fail(cmd, "%s: %s", path, slm_last_error());
            goto out;
        }
        if (n < (size_t)o->pp.n_ctx) {
            cli_fail(cmd, "%s has %zu tokens, fewer than one window of %d (use a smaller --ctx)", o->text_path, n,
                     o->pp.n_ctx);
            goto out;
        }
        slm_ppl_params pp = o->pp;
        pp.bos = slm_tokenizer_add_bos(e.tok) ? slm_tokenizer_bos(e.tok) : -1;
        pp.save_base = save;
        pp.kl_base = kl;
        if ((s = slm_perplexity(e.ctx, ids, n, &pp, res))) {
            cli_fail(cmd, "%s: %s", path, slm_last_error());
            goto out;
        }
        row->has_ppl = true;
        row->ppl = res->ppl;
        row->ppl_stderr = res->ppl * res->nll_stderr;
        row->n_scored = res->n_scored;
        o->n_windows = res->n_chunks;
        if (res->has_kl) {
            row->has_kl = true;
            row->kl_mean = res->kl_mean;
            row->kl_p99 = res->kl_p99;
            row->kl_max = res->kl_max;
            row->top1 = res->top1_agree;
            row->ppl_ratio = res->ppl_ratio;
        }
    }
    if (o->tg > 0) {
        slm_bench_params bp = {.kind = SLM_BENCH_TG, .n_tokens = o->tg, .reps = TG_REPS, .warmup = 1, .seed = 1};
        slm_bench_stats st;
        fprintf(stderr, "eval: %s: tg%d, %d runs\n", base_name(path), o->tg, TG_REPS);
        if ((s = slm_bench_run(e.ctx, &bp, NULL, &st))) {
            cli_fail(cmd, "%s: %s", path, slm_last_error());
            goto out;
        }
        row->has_tg = true;
        row->tg = st.median;
    }
    if (o->pp_tokens > 0) {
        slm_bench_params bp = {.kind = SLM_BENCH_PP, .n_tokens = o->pp_tokens, .reps = TG_REPS, .warmup = 1, .seed = 1};
        slm_bench_stats st;
        fprintf(stderr, "eval: %s: pp%d, %d runs\n", base_name(path), o->pp_tokens, TG_REPS);
        if ((s = slm_bench_run(e.ctx, &bp, NULL, &st))) {
            cli_fail(cmd, "%s: %s", path, slm_last_error());
            goto out;
        }
        row->has_pp = true;
        row->pp = st.median;
    }
    uint64_t rss1;
    if (mem && slm_mem_read(&rss1, &hwm)) {
        row->has_mem = true;
        row->peak_rss = hwm;
        row->peak_delta = hwm > rss0 ? hwm - rss0 : 0;
    }
    ok = true;
out:
    free(ids);
    cli_engine_free(&e);
    return ok;
}

/* ---- the base file and its cache ---- */

typedef struct {
    char file[4096];   /* the top-k file used */
    char digest[4096]; /* its digest record (cache only) */
    char tmpdir[3968]; /* --no-cache: removed at the end */
    char model_sha[65], text_sha[65], key[65];
    bool reused;
} base_file;

static bool mkdir_p(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return false;
        *s = '/';
    }
    return mkdir(p, 0755) == 0 || errno == EEXIST;
}

/* True when the cached file exists and its SHA-256 matches the digest record beside it. A
 * file that exists but does not match is deleted (with its record). */
static bool cache_valid(const base_file *b) {
    struct stat st;
    if (stat(b->file, &st) != 0) return false;
    char want[65] = {0}, got[65];
    FILE *f = fopen(b->digest, "rb");
    size_t n = f ? fread(want, 1, 64, f) : 0;
    if (f) fclose(f);
    const char *why = "no digest record";
    if (n == 64) {
        if (slm_sha256_file(b->file, got) != SLM_OK) why = "unreadable";
        else if (strcmp(got, want) != 0) why = "digest mismatch";
        else return true;
    }
    fprintf(stderr, "eval: cached base file %s is corrupt (%s): deleting it and computing it again\n", b->file, why);
    unlink(b->file);
    unlink(b->digest);
    return false;
}

static bool write_digest(const base_file *b) {
    char hex[65];
    slm_status s = slm_sha256_file(b->file, hex);
    if (s) return cli_fail_status(cmd, s), false;
    slm_afile f;
    if ((s = slm_afile_open(&f, b->digest))) return cli_fail_status(cmd, s), false;
    slm_afile_write(&f, hex, 64);
    slm_afile_write(&f, "\n", 1);
    if ((s = slm_afile_commit(&f))) return cli_fail_status(cmd, s), false;
    return true;
}

/* Find or compute the base file; the base row gets its sizes (and tg). */
static bool prepare_base(eval_opts *o, const char *base, bool no_cache, base_file *b, slm_report_row *row) {
    slm_status s;
    fprintf(stderr, "eval: hashing %s\n", base);
    if ((s = slm_sha256_file(base, b->model_sha))) return cli_fail_status(cmd, s), false;
    slm_sha256_hex(o->text, o->text_len, b->text_sha);
    slm_report_base_key(b->model_sha, b->text_sha, o->pp.n_ctx, o->pp.n_chunks, o->pp.top_k,
                        o->eo.ctx.kv_type == SLM_KV_F32 ? "f32" : "f16", b->key);
    if (no_cache) {
        const char *t = getenv("TMPDIR");
        snprintf(b->tmpdir, sizeof b->tmpdir, "%s/slimlm-eval-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(b->tmpdir)) {
            cli_fail(cmd, "cannot create a temporary directory %s: %s", b->tmpdir, strerror(errno));
            b->tmpdir[0] = 0;
            return false;
        }
        snprintf(b->file, sizeof b->file, "%s/base.klb", b->tmpdir);
    } else {
        char dir[3968];
        slm_report_cache_dir(dir, sizeof dir);
        if (!mkdir_p(dir))
            return cli_fail(cmd, "cannot create the cache directory %s: %s (or use --no-cache)", dir, strerror(errno)),
                   false;
        snprintf(b->file, sizeof b->file, "%s/%s.klb", dir, b->key);
        snprintf(b->digest, sizeof b->digest, "%s/%s.sha256", dir, b->key);
        b->reused = cache_valid(b);
    }
    slm_ppl_result res;
    if (b->reused) {
        fprintf(stderr, "eval: reusing cached base file %s\n", b->file);
        return eval_model(o, base, false, NULL, NULL, row, &res);
    }
    fprintf(stderr, "eval: computing base file %s from %s\n", b->file, base);
    if (!eval_model(o, base, true, b->file, NULL, row, &res)) return false;
    row->has_ppl = false; /* set from the base file below, as when it is reused */
    return no_cache || write_digest(b);
}

/* ---- output ---- */

static bool write_json(const char *path, const eval_opts *o, const char *base, const base_file *b,
                       const slm_report_row *rows, int n) {
    slm_sb js = {0};
    slm_sb_printf(&js, "{\n  \"text\": ");
    slm_sb_json_str(&js, o->text_path);
    char tsha[65];
    slm_sha256_hex(o->text, o->text_len, tsha);
    slm_sb_printf(&js, ", \"text_sha256\": \"%s\", \"ctx\": %d, \"chunks\": %d, \"top_k\": %d, \"kv_type\": \"%s\", "
                       "\"kernels\": \"%s\", \"threads\": %d, \"tg_tokens\": %d, \"pp_tokens\": %d,\n  \"base\": ",
                  tsha, o->pp.n_ctx, o->pp.n_chunks, o->pp.top_k, o->eo.ctx.kv_type == SLM_KV_F32 ? "f32" : "f16",
                  o->isa, o->threads, o->tg, o->pp_tokens);
    if (base) {
        slm_sb_json_str(&js, base);
        slm_sb_printf(&js, ", \"base_sha256\": \"%s\", \"base_key\": \"%s\", \"base_file\": ", b->model_sha, b->key);
        if (b->tmpdir[0]) slm_sb_printf(&js, "null");
        else slm_sb_json_str(&js, b->file);
        slm_sb_printf(&js, ", \"base_file_reused\": %s", b->reused ? "true" : "false");
    } else {
        slm_sb_printf(&js, "null");
    }
    slm_sb_printf(&js, ",\n  \"models\": ");
    slm_report_json_rows(&js, rows, n);
    slm_sb_printf(&js, "\n}\n");
    if (js.oom) {
        slm_sb_free(&js);
        return cli_fail(cmd, "out of memory"), false;
    }
    slm_afile f;
    slm_status s = slm_afile_open(&f, path);
    if (!s) {
        slm_afile_write(&f, js.p, js.len);
        s = slm_afile_commit(&f);
    }
    slm_sb_free(&js);
    if (s) return cli_fail_status(cmd, s), false;
    return true;
}

static bool write_csv(const char *path, const slm_report_row *rows, int n) {
    slm_sb b = {0};
    slm_report_csv(&b, rows, n);
    if (b.oom) {
        slm_sb_free(&b);
        return cli_fail(cmd, "out of memory"), false;
    }
    slm_afile f;
    slm_status s = slm_afile_open(&f, path);
    if (!s) {
        slm_afile_write(&f, b.p, b.len);
        s = slm_afile_commit(&f);
    }
    slm_sb_free(&b);
    if (s) return cli_fail_status(cmd, s), false;
    return true;
}

int cmd_eval(int argc, char **argv) {
    eval_opts o = {.pp = {.n_ctx = 512, .top_k = BASE_TOP_K, .progress = true}};
    const char *models[MAX_MODELS], *base = NULL, *json = NULL, *csv = NULL;
    int n_models = 0;
    bool no_cache = false;
    long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(val = cli_value(cmd, argc, argv, &i))) return 1;
            if (n_models == MAX_MODELS) return cli_fail(cmd, "at most %d models", MAX_MODELS);
            models[n_models++] = val;
            continue;
        }
        if (a[0] != '-') {
            if (n_models == MAX_MODELS) return cli_fail(cmd, "at most %d models", MAX_MODELS);
            models[n_models++] = a;
            continue;
        }
        int r = cli_engine_flag(cmd, argc, argv, &i, &o.eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(o.text_path = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--base")) {
            if (!(base = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 4, 1 << 15, &v)) return 1;
            o.pp.n_ctx = (int)v;
        } else if (!strcmp(a, "--chunks")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 1, 1 << 30, &v)) return 1;
            o.pp.n_chunks = (int)v;
        } else if (!strcmp(a, "--tg")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 0, 1 << 15, &v)) return 1;
            o.tg = (int)v;
        } else if (!strcmp(a, "--pp")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 0, 1 << 15, &v)) return 1;
            o.pp_tokens = (int)v;
        } else if (!strcmp(a, "--csv")) {
            if (!(csv = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--no-cache")) {
            no_cache = true;
        } else if (!strcmp(a, "--json")) {
            if (!(json = cli_value(cmd, argc, argv, &i))) return 1;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
    }
    if (!o.text_path) return cli_fail(cmd, "-f TEXT is required (see --help)");
    char def[4096];
    if (n_models == 0) models[n_models++] = slm_default_model_path(def, sizeof def);
    for (int i = 0; i < n_models; i++)
        if (!check_readable(models[i])) return 1;
    if (base && !check_readable(base)) return 1;
    char *text = cli_read_file(cmd, o.text_path, &o.text_len);
    if (!text) return 1;
    o.text = text;

    int rc = 1, n_rows = 0;
    base_file bf = {0};
    slm_report_row rows[MAX_MODELS + 1];
    memset(rows, 0, sizeof rows);
    slm_report_row *brow = NULL;
    if (base) {
        brow = &rows[n_rows++];
        brow->name = base_name(base);
        brow->path = base;
        brow->is_base = true;
        if (!prepare_base(&o, base, no_cache, &bf, brow)) goto out;
    }
    for (int i = 0; i < n_models; i++) {
        slm_report_row *row = &rows[n_rows++];
        row->name = base_name(models[i]);
        row->path = models[i];
        fprintf(stderr, "eval: [%d/%d] %s\n", i + 1, n_models, models[i]);
        slm_ppl_result res;
        if (!eval_model(&o, models[i], true, NULL, base ? bf.file : NULL, row, &res)) goto out;
        if (brow && !brow->has_ppl) {
            brow->has_ppl = true;
            brow->ppl = res.base_ppl;
            brow->ppl_stderr = -1;
            brow->n_scored = res.n_scored;
        }
    }
    printf("%s: %d windows of %d, %ld tokens scored per model; kernels %s, %d threads, kv %s\n", o.text_path,
           o.n_windows, o.pp.n_ctx, rows[n_rows - 1].n_scored, o.isa, o.threads,
           o.eo.ctx.kv_type == SLM_KV_F32 ? "f32" : "f16");
    slm_report_table(stdout, rows, n_rows, base != NULL, o.tg, o.pp_tokens);
    if (json && !write_json(json, &o, base, &bf, rows, n_rows)) goto out;
    if (csv && !write_csv(csv, rows, n_rows)) goto out;
    rc = 0;
out:
    if (bf.tmpdir[0]) {
        unlink(bf.file);
        rmdir(bf.tmpdir);
    }
    free(text);
    return rc;
}
