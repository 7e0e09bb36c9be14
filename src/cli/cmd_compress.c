/* cmd_compress.c - `slimlm compress`: run a recipe (src/compress/recipe.h) step by step, each
 * step being the command of the same name called in-process, with resumable intermediate
 * files, calibration computed once and reused, and a model card beside the output. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "common.h"
#include "compress/recipe.h"
#include "core/atomic_file.h"
#include "core/paths.h"
#include "core/sha256.h"
#include "core/strbuf.h"
#include "eval/layers.h"

static const char *const usage =
    "usage: slimlm compress [-m IN] -o OUT --recipe FILE [--work DIR] [--keep-intermediate]\n"
    "                       [--eval TEXT [--eval-chunks N]] [-t N] [-q]\n"
    "\n"
    "Runs the steps of a recipe (docs/RECIPES.md) on IN, each step the command of the same name\n"
    "(prune, distill, awq, quantize, cluster, pack) with the flags of its line:\n"
    "\n"
    "    # prune, heal, quantize, pack\n"
    "    prune --method wanda --sparsity 0.5\n"
    "    distill --tokens 65536 --loss kl\n"
    "    awq --bits 4 --group 128\n"
    "    pack --codec auto\n"
    "\n"
    "The whole recipe is checked before anything runs: an unknown step or flag, a bad value, or a\n"
    "flag the runner sets (-m, -o, -t, -q, --calib, --save-calib, distill --teacher/--student)\n"
    "is a one-line error naming FILE:LINE. Step N reads the output of step N-1 (the first reads\n"
    "IN) and writes DIR/step-N-NAME-HASH.gguf, HASH covering IN's SHA-256 and recipe lines 1..N;\n"
    "a step whose output and record (.done: hash, size, SHA-256) are already there is skipped,\n"
    "so an interrupted or extended recipe resumes. distill gets --teacher IN --student <previous\n"
    "output> (with --keep-layers/--every-other/--drop-block, only as the first step, the student\n"
    "comes from IN).\n"
    "\n"
    "Calibration is computed once: the first step that needs it (awq; prune wanda or structured;\n"
    "cluster --weighted) saves it to DIR, later steps with the same calibration flags (--text,\n"
    "--samples, --seq, --seed) load it, so statistics of the model before pruning serve the\n"
    "later steps. A step that changes shapes (distill, structured prune) ends that reuse; awq\n"
    "needs sampled input rows, which only a calibration saved by awq holds.\n"
    "\n"
    "OUT gets the last step's output; OUT.md a model card (recipe, source SHA-256, per step\n"
    "summary, figures, how to run it); OUT.layers.tsv the per-layer figures of the step tables\n"
    "(for `slimlm report --layers`). Each step's stdout is kept in DIR/step-N-NAME-HASH.log.\n"
    "\n"
    "  -m, --model IN        input model (default: the fetched SmolLM2-135M-Instruct)\n"
    "  -o, --out OUT         output model (must differ from IN)\n"
    "  --recipe FILE         the recipe\n"
    "  --work DIR            intermediate files (default OUT.work)\n"
    "  --keep-intermediate   keep DIR (default: removed after success)\n"
    "  --eval TEXT           measure OUT against IN on TEXT (slimlm eval: size, bits per weight,\n"
    "                        perplexity, KL, top-1) and put the figures in the card\n"
    "  --eval-chunks N       windows of 512 tokens evaluated (default 8)\n"
    "  --check               validate the recipe and print the plan, run nothing\n"
    "  -t, --threads N       worker threads of every step (default: all CPUs)\n"
    "  -q, --quiet           only the [step i/n] lines (the commands' output goes to the logs)\n"
    "  -h, --help            this help\n";

static const char *cmd = "compress";

typedef int (*step_fn)(int, char **);

static step_fn step_entry(slm_step_kind k) {
    switch (k) {
    case SLM_STEP_PRUNE: return cmd_prune;
    case SLM_STEP_DISTILL: return cmd_distill;
    case SLM_STEP_AWQ: return cmd_awq;
    case SLM_STEP_QUANTIZE: return cmd_quantize;
    case SLM_STEP_CLUSTER: return cmd_cluster;
    case SLM_STEP_PACK: return cmd_pack;
    default: return NULL;
    }
}

typedef struct {
    const char *in, *out, *recipe_path, *threads, *eval_text;
    char work[4096];
    bool keep, quiet, check;
    int eval_chunks;
} compress_opts;

/* The calibration file of the run so far. */
typedef struct {
    char path[4200];
    char key[8400];
    char rows[64];    /* awq --keep-rows as written ("" default); "none" without rows */
    bool valid;
} calib_state;

typedef struct {
    char out[4200], done[4200], log[4200], calib[4200];
    char hash[65];
    char sha[65];      /* of out */
    bool skipped;
    uint64_t bytes;
    char summary[1024];
} step_state;

/* ---- small file helpers ---- */

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

static bool write_text(const char *path, const char *text, size_t n) {
    slm_afile f;
    slm_status s = slm_afile_open(&f, path);
    if (!s) {
        slm_afile_write(&f, text, n);
        s = slm_afile_commit(&f);
    }
    if (s) cli_fail_status(cmd, s);
    return s == SLM_OK;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    slm_sb b = {0};
    char buf[4096];
    size_t n;
    slm_sb_printf(&b, "%s", "");
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) slm_sb_printf(&b, "%.*s", (int)n, buf);
    fclose(f);
    if (b.oom) {
        slm_sb_free(&b);
        return NULL;
    }
    return b.p;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ---- step records (.done) ---- */

/* The record of a finished step: "hash H\nbytes N\nsha256 S\ninput I\n" (I: SHA-256 of the
 * file the step read). It matches when H, I, the size and the SHA-256 of the output agree. */
static bool record_matches(step_state *st, const char *input_sha, uint64_t *bytes) {
    char *t = read_all(st->done);
    if (!t) return false;
    char h[65] = {0}, sha[65] = {0}, in[65] = {0}, now[65];
    unsigned long long n = 0;
    bool ok = sscanf(t, "hash %64s bytes %llu sha256 %64s input %64s", h, &n, sha, in) == 4 && !strcmp(h, st->hash) &&
              !strcmp(in, input_sha);
    free(t);
    struct stat s;
    ok = ok && stat(st->out, &s) == 0 && (uint64_t)s.st_size == n;
    ok = ok && slm_sha256_file(st->out, now) == SLM_OK && !strcmp(now, sha);
    if (ok) {
        *bytes = n;
        memcpy(st->sha, sha, 65);
    }
    return ok;
}

static bool write_record(step_state *st, const char *input_sha) {
    char buf[320];
    struct stat s;
    slm_status e = slm_sha256_file(st->out, st->sha);
    if (e) return cli_fail_status(cmd, e), false;
    if (stat(st->out, &s) != 0) return cli_fail(cmd, "%s: %s", st->out, strerror(errno)), false;
    st->bytes = (uint64_t)s.st_size;
    int n = snprintf(buf, sizeof buf, "hash %s\nbytes %llu\nsha256 %s\ninput %s\n", st->hash,
                     (unsigned long long)st->bytes, st->sha, input_sha);
    return write_text(st->done, buf, (size_t)n);
}

/* ---- running one command with its stdout kept in a log ---- */

/* Run fn with stdout (quiet: and stderr) going to the file log; unless quiet, the log is
 * shown afterwards. Quiet and failing: the log's last line is shown on stderr. */
static int run_captured(step_fn fn, int argc, char **argv, const char *log, bool quiet) {
    fflush(stdout);
    fflush(stderr);
    int saved = dup(STDOUT_FILENO), saved_err = quiet ? dup(STDERR_FILENO) : -1;
    FILE *lf = fopen(log, "w");
    if (saved < 0 || !lf || (quiet && saved_err < 0)) {
        if (lf) fclose(lf);
        if (saved >= 0) close(saved);
        if (saved_err >= 0) close(saved_err);
        return cli_fail(cmd, "%s: %s", log, strerror(errno));
    }
    dup2(fileno(lf), STDOUT_FILENO);
    if (quiet) dup2(fileno(lf), STDERR_FILENO);
    int rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    if (quiet) {
        dup2(saved_err, STDERR_FILENO);
        close(saved_err);
    }
    fclose(lf);
    char *t = (!quiet || rc != 0) ? read_all(log) : NULL;
    if (t && !quiet) fputs(t, stdout);
    if (t && quiet) { /* the last non-empty line */
        size_t n = strlen(t);
        while (n && (t[n - 1] == '\n' || t[n - 1] == '\r')) t[--n] = 0;
        char *last = strrchr(t, '\n');
        fprintf(stderr, "%s\n", last ? last + 1 : t);
    }
    free(t);
    fflush(stdout);
    return rc;
}

/* Lines of a step's stdout worth a place in the card: totals and written files. */
static void summarize_log(const char *log, char *out, size_t cap) {
    out[0] = 0;
    char *t = read_all(log);
    if (!t) return;
    size_t len = 0;
    for (char *p = t; *p;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        char *c = strrchr(p, ',');  /* a timing at the end (", 0.02 s") is left out */
        size_t l = strlen(p);
        if (c && l > 2 && !strcmp(p + l - 2, " s") && strspn(c + 2, "0123456789.") == (size_t)(p + l - 2 - (c + 2)))
            *c = 0;
        if ((!strncmp(p, "total", 5) || !strncmp(p, "quantized matrices", 18)) && len + strlen(p) + 2 < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? "; " : "", p);
        if (!e) break;
        p = e + 1;
    }
    free(t);
}

/* ---- argument vectors ---- */

typedef struct {
    char *v[SLM_RECIPE_MAX_ARGS + 24];
    int n;
} argvec;

static void push(argvec *a, const char *s) { a->v[a->n++] = (char *)s; }

/* Whether step s can load the run's calibration file. */
static bool calib_reusable(const slm_recipe_step *s, const calib_state *cs, const char *want_key, const char *want_rows,
                           bool planning) {
    bool rows_ok = !s->calib_rows || (strcmp(cs->rows, "none") != 0 && !strcmp(cs->rows, want_rows));
    return cs->valid && !strcmp(cs->key, want_key) && rows_ok && (planning || access(cs->path, R_OK) == 0);
}

/* Flags that only say how to calibrate: dropped (with their values) when a file is loaded. */
static bool calib_only_flag(const char *f) {
    return !strcmp(f, "--text") || !strcmp(f, "--samples") || !strcmp(f, "--seq");
}

static void build_args(const compress_opts *o, const slm_recipe *r, int k, const char *prev, calib_state *cs,
                       step_state *st, argvec *a, const char *want_key, const char *want_rows) {
    const slm_recipe_step *s = &r->steps[k];
    push(a, slm_step_name(s->kind));
    if (s->kind == SLM_STEP_PACK) {
        push(a, prev);
        push(a, st->out);
    } else if (s->kind == SLM_STEP_DISTILL) {
        push(a, "--teacher");
        push(a, o->in);
        if (k > 0) {
            push(a, "--student");
            push(a, prev);
        }
        push(a, "-o");
        push(a, st->out);
    } else {
        push(a, "-m");
        push(a, prev);
        push(a, "-o");
        push(a, st->out);
    }
    bool load = s->calib && calib_reusable(s, cs, want_key, want_rows, o->check);
    for (int i = 0; i < s->argc; i++) {
        if (load && calib_only_flag(s->argv[i]) && i + 1 < s->argc) {
            i++;
            continue;
        }
        push(a, s->argv[i]);
    }
    if (load) {
        push(a, "--calib");
        push(a, cs->path);
        st->calib[0] = 0;
    } else if (s->calib) {
        push(a, "--save-calib");
        push(a, st->calib);
    }
    if (o->threads && s->kind != SLM_STEP_PACK) {
        push(a, "-t");
        push(a, o->threads);
    }
    a->v[a->n] = NULL;
}

/* ---- the output and its card ---- */

/* OUT as a hard link of the last step's file (renamed into place), or a copy. */
static bool place_output(const char *from, const char *to) {
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp-link-%ld", to, (long)getpid());
    unlink(tmp);
    if (link(from, tmp) == 0) {
        if (rename(tmp, to) == 0) return true;
        unlink(tmp);
        return cli_fail(cmd, "%s: %s", to, strerror(errno)), false;
    }
    FILE *f = fopen(from, "rb");
    if (!f) return cli_fail(cmd, "%s: %s", from, strerror(errno)), false;
    slm_afile a;
    slm_status s = slm_afile_open(&a, to);
    if (s) {
        fclose(f);
        return cli_fail_status(cmd, s), false;
    }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) slm_afile_write(&a, buf, n);
    bool err = ferror(f);
    fclose(f);
    if (err) {
        slm_afile_abort(&a);
        return cli_fail(cmd, "%s: read failed", from), false;
    }
    if ((s = slm_afile_commit(&a))) return cli_fail_status(cmd, s), false;
    return true;
}

static void card_eval(slm_sb *b, const char *json_path) {
    char *t = read_all(json_path);
    cJSON *j = t ? cJSON_Parse(t) : NULL;
    free(t);
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(j, "models");
    if (!cJSON_IsArray(models)) {
        slm_sb_printf(b, "(evaluation results unreadable)\n\n");
        cJSON_Delete(j);
        return;
    }
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(j, "ctx");
    slm_sb_printf(b, "On `%s`, windows of %d tokens (`slimlm eval`):\n\n", cJSON_IsString(text) ? text->valuestring : "?",
                  cJSON_IsNumber(ctx) ? ctx->valueint : 0);
    slm_sb_printf(b, "| model | size MiB | bits/weight | perplexity | KL mean | KL p99 | top-1 |\n"
                     "|---|---:|---:|---:|---:|---:|---:|\n");
    const cJSON *m;
    cJSON_ArrayForEach(m, models) {
        const char *keys[] = {"file_mib", "bpw", "ppl", "kl_mean", "kl_p99", "top1_agree"};
        const char *fmts[] = {"%.2f", "%.3f", "%.4f", "%.6f", "%.6f", "%.4f"};
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
        const cJSON *isb = cJSON_GetObjectItemCaseSensitive(m, "is_base");
        slm_sb_printf(b, "| %s%s |", cJSON_IsString(name) ? name->valuestring : "?",
                      cJSON_IsTrue(isb) ? " (original)" : "");
        for (int i = 0; i < 6; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, keys[i]);
            slm_sb_printf(b, " ");
            if (cJSON_IsNumber(v)) slm_sb_printf(b, fmts[i], v->valuedouble);
            else slm_sb_printf(b, "-");
            slm_sb_printf(b, " |");
        }
        slm_sb_printf(b, "\n");
    }
    slm_sb_printf(b, "\n");
    cJSON_Delete(j);
}

static bool write_card(const compress_opts *o, const slm_recipe *r, const step_state *ss, const char *in_sha,
                       const char *eval_json, bool has_layers) {
    char out_sha[65], path[4200];
    slm_status s = slm_sha256_file(o->out, out_sha);
    if (s) return cli_fail_status(cmd, s), false;
    struct stat in_st, out_st;
    stat(o->in, &in_st);
    stat(o->out, &out_st);
    slm_sb b = {0};
    slm_sb_printf(&b, "# %s\n\nCompressed with `slimlm compress` from `%s`.\n\n", base_name(o->out), base_name(o->in));
    slm_sb_printf(&b, "| | file | bytes | SHA-256 |\n|---|---|---:|---|\n");
    slm_sb_printf(&b, "| source | `%s` | %lld | `%s` |\n", base_name(o->in), (long long)in_st.st_size, in_sha);
    slm_sb_printf(&b, "| output | `%s` | %lld | `%s` |\n\n", base_name(o->out), (long long)out_st.st_size, out_sha);
    slm_sb_printf(&b, "## Recipe\n\n```\n");
    for (int k = 0; k < r->n_steps; k++) slm_sb_printf(&b, "%s\n", r->steps[k].canon);
    slm_sb_printf(&b, "```\n\n## Steps\n\n| step | command | output bytes | summary |\n|---:|---|---:|---|\n");
    for (int k = 0; k < r->n_steps; k++)
        slm_sb_printf(&b, "| %d | `%s` | %llu | %s |\n", k + 1, r->steps[k].canon, (unsigned long long)ss[k].bytes,
                      ss[k].summary[0] ? ss[k].summary : "-");
    slm_sb_printf(&b, "\n## Measured\n\n");
    if (eval_json) card_eval(&b, eval_json);
    else slm_sb_printf(&b, "Not measured (run with `--eval TEXT`, or `slimlm eval -m %s --base %s -f TEXT`).\n\n",
                       base_name(o->out), base_name(o->in));
    if (has_layers)
        slm_sb_printf(&b, "Per-layer figures of the steps: `%s.layers.tsv` (`slimlm report EVAL.json --layers %s.layers.tsv`).\n\n",
                      base_name(o->out), base_name(o->out));
    slm_sb_printf(&b, "## How to run\n\n```\nslimlm run -m %s -p \"The capital of France is\" -n 32\n"
                      "slimlm chat -m %s\nslimlm serve -m %s\n```\n",
                  base_name(o->out), base_name(o->out), base_name(o->out));
    if (b.oom) {
        slm_sb_free(&b);
        return cli_fail(cmd, "out of memory"), false;
    }
    snprintf(path, sizeof path, "%s.md", o->out);
    bool ok = write_text(path, b.p, b.len);
    slm_sb_free(&b);
    return ok;
}

/* ---- the run ---- */

static bool run_eval(const compress_opts *o, const char *json, const char *log) {
    char chunks[32];
    snprintf(chunks, sizeof chunks, "%d", o->eval_chunks);
    char *argv[24];
    int n = 0;
    argv[n++] = "eval";
    argv[n++] = "-m";
    argv[n++] = (char *)o->out;
    argv[n++] = "--base";
    argv[n++] = (char *)o->in;
    argv[n++] = "-f";
    argv[n++] = (char *)o->eval_text;
    argv[n++] = "--chunks";
    argv[n++] = chunks;
    argv[n++] = "--json";
    argv[n++] = (char *)json;
    if (o->threads) {
        argv[n++] = "-t";
        argv[n++] = (char *)o->threads;
    }
    argv[n] = NULL;
    fprintf(stderr, "[eval] %s against %s on %s\n", base_name(o->out), base_name(o->in), o->eval_text);
    return run_captured(cmd_eval, n, argv, log, o->quiet) == 0;
}

static void remove_work(const compress_opts *o, const slm_recipe *r, const step_state *ss, const char *extra[], int n_extra) {
    for (int k = 0; k < r->n_steps; k++) {
        unlink(ss[k].out);
        unlink(ss[k].done);
        unlink(ss[k].log);
        if (ss[k].calib[0]) unlink(ss[k].calib);
    }
    for (int i = 0; i < n_extra; i++) unlink(extra[i]);
    rmdir(o->work);
}

static int run_recipe(const compress_opts *o, const slm_recipe *r) {
    char in_sha[65];
    slm_status s;
    fprintf(stderr, "compress: hashing %s\n", o->in);
    if ((s = slm_sha256_file(o->in, in_sha))) return cli_fail_status(cmd, s);
    if (!o->check && !mkdir_p(o->work)) return cli_fail(cmd, "cannot create %s: %s", o->work, strerror(errno));
    step_state *ss = calloc((size_t)r->n_steps, sizeof *ss);
    if (!ss) return cli_fail(cmd, "out of memory");
    calib_state cs = {0};
    slm_layers layers = {0};
    const char *prev = o->in, *prev_sha = in_sha;
    int rc = 1;
    for (int k = 0; k < r->n_steps; k++) {
        const slm_recipe_step *rs = &r->steps[k];
        step_state *st = &ss[k];
        const char *name = slm_step_name(rs->kind);
        slm_recipe_hash(r, k, in_sha, st->hash);
        snprintf(st->out, sizeof st->out, "%s/step-%d-%s-%.16s.%s", o->work, k + 1, name, st->hash,
                 rs->kind == SLM_STEP_PACK ? "slm" : "gguf");
        snprintf(st->done, sizeof st->done, "%s/step-%d-%s-%.16s.done", o->work, k + 1, name, st->hash);
        snprintf(st->log, sizeof st->log, "%s/step-%d-%s-%.16s.log", o->work, k + 1, name, st->hash);
        snprintf(st->calib, sizeof st->calib, "%s/calib-%d-%.16s.bin", o->work, k + 1, st->hash);
        char key[8400], rows[64];
        slm_recipe_calib_key(rs, key, sizeof key);
        const char *kr = rs->kind == SLM_STEP_AWQ ? slm_recipe_flag(rs, "--keep-rows") : NULL;
        snprintf(rows, sizeof rows, "%s", rs->kind == SLM_STEP_AWQ ? (kr ? kr : "") : "none");
        argvec a = {.n = 0};
        build_args(o, r, k, prev, &cs, st, &a, key, rows);
        bool saves = st->calib[0] && rs->calib;
        if (!rs->calib) st->calib[0] = 0;
        if (o->check) {
            printf("[step %d/%d] line %d:", k + 1, r->n_steps, rs->line);
            for (int i = 0; i < a.n; i++) printf(" %s", a.v[i]);
            printf("\n");
        } else if (record_matches(st, prev_sha, &st->bytes)) {
            st->skipped = true;
            fprintf(stderr, "[step %d/%d] %s: done earlier, skipped (%s)\n", k + 1, r->n_steps, name, base_name(st->out));
        } else {
            fprintf(stderr, "[step %d/%d] %s ...\n", k + 1, r->n_steps, rs->canon);
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            int src = run_captured(step_entry(rs->kind), a.n, a.v, st->log, o->quiet);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (src != 0) {
                cli_fail(cmd, "step %d (%s, recipe line %d) failed; its output is in %s", k + 1, name, rs->line,
                         st->log);
                goto out;
            }
            if (!write_record(st, prev_sha)) goto out;
            fprintf(stderr, "[step %d/%d] %s: done in %.1f s, %llu bytes\n", k + 1, r->n_steps, name,
                    (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
                    (unsigned long long)st->bytes);
        }
        if (!o->check) {
            summarize_log(st->log, st->summary, sizeof st->summary);
            char *t = read_all(st->log);
            char step_name[32];
            snprintf(step_name, sizeof step_name, "%d-%s", k + 1, name);
            if (t && (s = slm_layers_scan(&layers, step_name, t))) {
                free(t);
                cli_fail_status(cmd, s);
                goto out;
            }
            free(t);
        }
        /* calibration bookkeeping for the steps after this one */
        if (saves && (o->check || access(st->calib, R_OK) == 0)) {
            cs.valid = true;
            snprintf(cs.path, sizeof cs.path, "%s", st->calib);
            snprintf(cs.key, sizeof cs.key, "%s", key);
            snprintf(cs.rows, sizeof cs.rows, "%s", rows);
        }
        if (rs->reshapes) cs.valid = false;
        prev = st->out;
        prev_sha = st->sha;
    }
    if (o->check) {
        rc = 0;
        goto out;
    }
    if (!place_output(prev, o->out)) goto out;
    char layers_path[4200], eval_json[4200], eval_log[4200];
    snprintf(layers_path, sizeof layers_path, "%s.layers.tsv", o->out);
    snprintf(eval_json, sizeof eval_json, "%s/eval.json", o->work);
    snprintf(eval_log, sizeof eval_log, "%s/eval.log", o->work);
    if (layers.n > 0 && (s = slm_layers_write(&layers, layers_path))) {
        cli_fail_status(cmd, s);
        goto out;
    }
    if (o->eval_text && !run_eval(o, eval_json, eval_log)) {
        cli_fail(cmd, "evaluation of %s failed (see %s)", o->out, eval_log);
        goto out;
    }
    if (!write_card(o, r, ss, in_sha, o->eval_text ? eval_json : NULL, layers.n > 0)) goto out;
    fprintf(stderr, "compress: wrote %s and %s.md\n", o->out, o->out);
    if (!o->keep) {
        const char *extra[] = {eval_json, eval_log};
        remove_work(o, r, ss, extra, 2);
    }
    rc = 0;
out:
    slm_layers_free(&layers);
    free(ss);
    return rc;
}

int cmd_compress(int argc, char **argv) {
    compress_opts o = {.eval_chunks = 8};
    const char *work = NULL;
    long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(o.in = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!(o.out = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--recipe")) {
            if (!(o.recipe_path = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--work")) {
            if (!(work = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--keep-intermediate")) {
            o.keep = true;
        } else if (!strcmp(a, "--check")) {
            o.check = true;
        } else if (!strcmp(a, "--eval")) {
            if (!(o.eval_text = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--eval-chunks")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 1, 1 << 20, &v)) return 1;
            o.eval_chunks = (int)v;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(o.threads = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, o.threads, 1, 1024, &v)) return 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o.quiet = true;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
    }
    if (!o.recipe_path) return cli_fail(cmd, "--recipe FILE is required (see --help)");
    if (!o.out && !o.check) return cli_fail(cmd, "-o OUT is required (see --help)");
    slm_recipe r;
    slm_status s = slm_recipe_load(o.recipe_path, &r);
    if (s) return cli_fail(cmd, "%s", slm_last_error());
    char def[4096];
    if (!o.in) o.in = slm_default_model_path(def, sizeof def);
    int rc = 1;
    if (access(o.in, R_OK) != 0) {
        cli_fail(cmd, "%s: %s", o.in, strerror(errno));
        goto done;
    }
    if (o.out && !cli_check_output(cmd, o.in, o.out)) goto done;
    if (work) snprintf(o.work, sizeof o.work, "%s", work);
    else snprintf(o.work, sizeof o.work, "%s.work", o.out ? o.out : "out");
    rc = run_recipe(&o, &r);
done:
    slm_recipe_free(&r);
    return rc;
}
