/* cmd_bench.c - `slimlm bench`: prompt-processing and generation speed, memory bandwidth, and
 * how close decoding comes to the memory limit. Prints a table; --json writes the same data. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "commands.h"
#include "common.h"
#include "core/strbuf.h"
#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/paths.h"
#include "core/threadpool.h"
#include "eval/bench.h"
#include "eval/membw.h"
#include "kernels/qdot.h"
#include "model/chat.h"
#include "spec_flags.h"

/* Write the JSON text to the (already opened) atomic file and commit it; false after printing
 * the error. */
static bool commit_json(slm_afile *af, const slm_sb *js, const char *path) {
    if (js->oom) {
        cli_fail("bench", "out of memory writing the JSON report");
        return false;
    }
    slm_afile_write(af, js->p, js->len);
    slm_status s = slm_afile_commit(af);
    if (s) {
        cli_fail_status("bench", s);
        return false;
    }
    fprintf(stderr, "bench: wrote %s\n", path);
    return true;
}

static const char *const usage =
    "usage: slimlm bench [-m MODEL] [-p 512] [-n 128] [-t N[,N...]] [-r 5] [options]\n"
    "\n"
    "Measure inference speed the way llama-bench does, and the machine's memory bandwidth.\n"
    "\n"
    "  -m, --model PATH     GGUF model (default: the fetched SmolLM2-135M-Instruct)\n"
    "  -p, --n-prompt N     prompt tokens for the pp test, 0 = skip it (default 512)\n"
    "  -n, --n-gen N        generated tokens for the tg test, 0 = skip it (default 128)\n"
    "  -t, --threads LIST   thread counts, comma-separated, each benchmarked in turn;\n"
    "                       0 = all online CPUs (default 0)\n"
    "  -r, --reps N         timed repetitions per test, after one untimed warm-up (default 5)\n"
    "  -b, --batch N        tokens per forward pass; a longer prompt is split (default 512)\n"
    "  --kv-type TYPE       KV cache element type: f16 or f32 (default: the engine's, f16)\n"
    "  --isa NAME           kernel set: scalar, avx2, avx512, ref (default: best for this CPU,\n"
    "                       or $SLIMLM_ISA)\n"
    "  -s, --seed S         seed of the pseudo-random token ids (default 1)\n"
    "  --json FILE          also write everything as JSON (written atomically)\n"
    "  --no-membw           skip the memory bandwidth probe\n"
    "  --membw-mib N        size of each of the probe's 3 arrays in MiB (default 128)\n"
    "  --membw-passes N     probe passes per kernel, the best is kept (default 5)\n"
    "  --spec               instead of pp/tg: plain greedy against speculative decoding (needs\n"
    "                       --draft or --lookup) on fixed prompts, see below\n"
    "  -h, --help           this help\n"
    "\n"
    "Tests (tokens/s = tokens / wall-clock seconds of the timed part):\n"
    "  ppN  prompt processing: from an empty context, evaluate N prompt tokens in one call\n"
    "       (split into passes of --batch tokens), logits of the last position only.\n"
    "  tgN  token generation: from an empty context, evaluate N tokens one at a time, logits\n"
    "       of each; a fixed token sequence is fed, so no sampling cost is included.\n"
    "  Token ids are pseudo-random in [0, vocab) from the seed. Each test runs once untimed,\n"
    "  then -r times; the table shows the median, min and max tokens/s and the standard\n"
    "  deviation over the timed runs.\n"
    "\n"
    "Memory bandwidth (STREAM-like): copy a[i] = b[i] and triad a[i] = b[i] + s*c[i] over\n"
    "arrays of doubles much larger than the caches, with 1 thread and each -t count; GB/s\n"
    "counts bytes read + written (1e9 bytes/s), best pass. Decode bandwidth used = weight\n"
    "bytes read per generated token (every layer matrix plus the output head; the embedding\n"
    "table only when it is the tied output head) x tg tokens/s, and its fraction of the triad\n"
    "bandwidth at the same thread count: how far decoding is from the memory limit (KV cache\n"
    "and activation traffic are not counted, so this is a lower bound of the traffic).\n"
    "\n"
    "Peak RSS (getrusage) is taken after the model tests, before the probe allocates its\n"
    "arrays. Progress lines go to stderr; the report to stdout.\n"
    "\n"
    "--spec: for each of four prompts wrapped in the model's chat template (open-ended: a\n"
    "story; input-grounded: summarize a Wikipedia paragraph; rename a variable in code; fix the\n"
    "spelling of a paragraph), each\n"
    "run generates -n tokens (or up to the end of the reply) greedily, plainly and then with the\n"
    "drafter, from the same prompt; the table shows median tokens/s of each, the median of the\n"
    "same-run ratios (speedup), the acceptance rate, tokens per verification step and the share\n"
    "of time spent drafting. The outputs are checked to be identical first.\n";

#define MAX_THREAD_COUNTS 32

typedef struct {
    slm_bench_kind kind;
    int n_tokens, threads;
    slm_bench_stats st;
    double *samples; /* [reps] */
} bench_row;

/* ---- flags ---- */
static bool parse_threads(const char *cmd, const char *v, int *out, int *n) {
    *n = 0;
    size_t len = strlen(v);
    bool ok = len > 0 && v[len - 1] != ',';
    for (const char *p = v; ok && *p;) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || *p == '-' || *p == '+' || x > 4096 || (*end && *end != ',') || *n == MAX_THREAD_COUNTS)
            ok = false;
        else
            out[(*n)++] = (int)x;
        p = *end ? end + 1 : end;
    }
    if (!ok)
        cli_fail(cmd, "-t: '%s' is not a comma-separated list of at most %d thread counts in [0, 4096]", v,
                 MAX_THREAD_COUNTS);
    return ok;
}

static double peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss * 1024.0; /* Linux reports KiB */
}

static void model_label(const slm_model *m, const slm_bench_model *bm, char *buf, size_t cap) {
    /* architecture, size in weights, dtype holding most matrix bytes: "llama 135M q4_1" */
    int best = 0;
    for (int i = 1; i < bm->n_types; i++)
        if (bm->types[i].bytes > bm->types[best].bytes) best = i;
    double np = (double)bm->n_params;
    char sz[32];
    if (np >= 1e9) snprintf(sz, sizeof sz, "%.1fB", np / 1e9);
    else snprintf(sz, sizeof sz, "%.0fM", np / 1e6);
    snprintf(buf, cap, "%s %s %s", m->cfg.arch_name, sz, bm->n_types ? slm_dtype_name(bm->types[best].type) : "?");
}

static const slm_membw_result *membw_for(const slm_membw_result *mb, int n_mb, int threads) {
    for (int i = 0; i < n_mb; i++)
        if (mb[i].n_threads == threads) return &mb[i];
    return NULL;
}

/* ---- --spec: plain against speculative greedy decoding ---- */

static const char *const spec_prompt_names[] = {"open-ended", "summarize", "code-rename", "fix-spelling"};
static const char *const spec_prompts[] = {
    "Write a short story about a robot who learns to paint.",
    "Summarize the following text:\n\nHomarus gammarus, known as the European lobster or common lobster, is a "
    "species of clawed lobster from the eastern Atlantic Ocean, Mediterranean Sea and parts of the Black Sea. It is "
    "closely related to the American lobster, H. americanus. It may grow to a length of 60 cm (24 in) and a mass of "
    "6 kilograms (13 lb), and bears a conspicuous pair of claws. In life, the lobsters are blue, only becoming "
    "\"lobster red\" on cooking. Mating occurs in the summer, producing eggs which are carried by the females for up "
    "to a year before hatching into planktonic larvae. Homarus gammarus is a highly esteemed food, and is widely "
    "caught using lobster pots, mostly around the British Isles.",
    "Repeat the following code with the variable `total` renamed to `sum`:\n\n"
    "def average(values):\n"
    "    total = 0\n"
    "    for v in values:\n"
    "        total += v\n"
    "    if len(values) == 0:\n"
    "        return 0\n"
    "    return total / len(values)\n",
    "Fix the spelling mistakes in the following text and write out the corrected text:\n\n"
    "The European lobster is a specis of clawed lobster from the eastern Atlantic Ocean, Mediterranean Sea and "
    "parts of the Black Sea. It is closly related to the American lobster. It may grow to a lenght of 60 cm and a "
    "mass of 6 kilograms, and bears a conspicous pair of claws. In life, the lobsters are blue, only becomming "
    "\"lobster red\" on cooking. Mating occurs in the sumer, producing eggs which are carried by the females for up "
    "to a year before hatching into planktonic larvae.",
};
#define N_SPEC_PROMPTS ((int)(sizeof spec_prompts / sizeof spec_prompts[0]))

static int bench_spec(const char *cmd, const cli_engine_opts *eo, const cli_spec_opts *so, int n_gen, int reps,
                      const char *json) {
    cli_engine e;
    if (!cli_engine_load(cmd, eo, true, &e)) return 1;
    int rc = 1;
    cli_spec cs = {0};
    slm_sb js = {0};
    slm_afile af = {0};
    slm_sampler_params gp = slm_sampler_defaults();
    gp.temperature = 0;
    slm_status s;
    slm_chat_template t;
    slm_gguf_str tstr = {0};
    slm_bench_spec_result res[N_SPEC_PROMPTS];
    int n_tok[N_SPEC_PROMPTS];
    slm_gguf_get_str(e.model->gguf, "tokenizer.chat_template", &tstr);
    if ((s = slm_chat_detect(tstr.ptr, tstr.len, &t))) {
        cli_fail_status(cmd, s);
        goto out;
    }
    if (json && (s = slm_afile_open(&af, json))) {
        cli_fail_status(cmd, s);
        goto out;
    }
    if (!cli_spec_load(cmd, so, &e, &gp, &cs)) goto out;
    char what[600];
    if (so->lookup) snprintf(what, sizeof what, "prompt lookup, n-gram %d", so->lookup);
    else if (so->draft_layers)
        snprintf(what, sizeof what, "the target's first %d layers + head, stop below p %.2f", so->draft_layers,
                 so->min_p >= 0 ? so->min_p : CLI_DRAFT_MIN_P);
    else snprintf(what, sizeof what, "draft model %s, stop below p %.2f", so->draft, so->min_p >= 0 ? so->min_p : CLI_DRAFT_MIN_P);
    printf("target: %s\ndrafter: %s, draft-max %d (adaptive)\nthreads: %d | kernels: %s | runs: %d timed + 1 warm-up | "
           "-n %d\n\n",
           eo->model ? eo->model : "(default model)", what, cs.sp.draft_max, slm_pool_size(e.ctx->pool),
           slm_isa_name(e.ctx->isa), reps, n_gen);
    for (int i = 0; i < N_SPEC_PROMPTS; i++) {
        char *text = NULL;
        int32_t *ids = NULL;
        size_t n = 0;
        slm_chat_msg msg = {"user", spec_prompts[i]};
        if ((s = slm_chat_render(&t, &msg, 1, true, &text)) ||
            (s = slm_tokenizer_encode(e.tok, text, strlen(text), true, true, &ids, &n))) {
            free(text);
            cli_fail_status(cmd, s);
            goto out;
        }
        free(text);
        n_tok[i] = (int)n;
        fprintf(stderr, "bench: %s (%zu prompt tokens)...\n", spec_prompt_names[i], n);
        s = slm_bench_spec(e.ctx, e.tok, cs.d, &cs.sp, ids, (int)n, n_gen, reps, &res[i]);
        free(ids);
        if (s) {
            cli_fail_status(cmd, s);
            goto out;
        }
        if (!res[i].identical) {
            cli_fail(cmd, "%s: the speculative output differs from the plain output", spec_prompt_names[i]);
            goto out;
        }
    }
    printf("| %-12s | %6s | %9s | %11s | %9s | %7s | %9s | %10s | %8s |\n", "prompt", "prompt", "generated",
           "plain t/s", "spec t/s", "speedup", "accepted", "tok/step", "drafting");
    printf("| %s | %s: | %s: | %s: | %s: | %s: | %s: | %s: | %s: |\n", "------------", "-----", "--------",
           "----------", "--------", "------", "--------", "---------", "-------");
    for (int i = 0; i < N_SPEC_PROMPTS; i++)
        printf("| %-12s | %6d | %9d | %11.2f | %9.2f | %6.2fx | %8.1f%% | %10.2f | %7.1f%% |\n", spec_prompt_names[i],
               n_tok[i], res[i].n_generated, res[i].plain.median, res[i].spec.median, res[i].speedup,
               100 * res[i].accept_rate, res[i].tokens_per_step, 100 * res[i].draft_share);
    fflush(stdout);
    if (json) {
        slm_sb_printf(&js, "{\n  \"drafter\": ");
        slm_sb_json_str(&js, so->lookup ? "lookup" : so->draft_layers ? "self" : "draft-model");
        slm_sb_printf(&js, ", \"draft\": ");
        slm_sb_json_str(&js, so->draft ? so->draft : "");
        slm_sb_printf(&js, ", \"draft_layers\": %d", so->draft_layers);
        slm_sb_printf(&js, ", \"lookup\": %d, \"draft_max\": %d, \"threads\": %d, \"n_gen\": %d, \"reps\": %d,\n  \"results\": [",
                      so->lookup, cs.sp.draft_max, slm_pool_size(e.ctx->pool), n_gen, reps);
        for (int i = 0; i < N_SPEC_PROMPTS; i++)
            slm_sb_printf(&js,
                          "%s\n    {\"prompt\": \"%s\", \"prompt_tokens\": %d, \"generated\": %d, \"plain_tps\": %.4f, "
                          "\"spec_tps\": %.4f, \"speedup\": %.4f, \"accept_rate\": %.4f, \"tokens_per_step\": %.4f, "
                          "\"draft_share\": %.4f}",
                          i ? "," : "", spec_prompt_names[i], n_tok[i], res[i].n_generated, res[i].plain.median,
                          res[i].spec.median, res[i].speedup, res[i].accept_rate, res[i].tokens_per_step,
                          res[i].draft_share);
        slm_sb_printf(&js, "\n  ]\n}\n");
        if (!commit_json(&af, &js, json)) goto out;
    }
    rc = 0;
out:
    slm_afile_abort(&af);
    free(js.p);
    cli_spec_free(&cs);
    cli_engine_free(&e);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench";
    const char *model_path = NULL, *json = NULL;
    long n_prompt = 512, n_gen = 128, reps = 5, batch = 512, membw_mib = 128, membw_passes = 5;
    int threads[MAX_THREAD_COUNTS] = {0}, n_threads = 1;
    slm_kv_type kv_type = SLM_KV_F16;
    int isa = -1;
    unsigned long long seed = 1;
    bool do_membw = true, spec = false;
    cli_spec_opts so;
    cli_spec_defaults(&so);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int sr = cli_spec_flag(cmd, argc, argv, &i, &so);
        if (sr < 0) return 1;
        if (sr > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            fputs(cli_spec_help, stdout);
            return 0;
        } else if (!strcmp(a, "--spec")) {
            spec = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model_path = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 0, 1 << 20, &n_prompt)) return 1;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 0, 1 << 20, &n_gen)) return 1;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 1000, &reps)) return 1;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 1 << 16, &batch)) return 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !parse_threads(cmd, v, threads, &n_threads)) return 1;
        } else if (!strcmp(a, "--kv-type")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
            if (!strcmp(v, "f16")) kv_type = SLM_KV_F16;
            else if (!strcmp(v, "f32")) kv_type = SLM_KV_F32;
            else return cli_fail(cmd, "--kv-type: '%s' is not f16 or f32", v);
        } else if (!strcmp(a, "--isa")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
            if ((isa = slm_isa_from_name(v)) < 0)
                return cli_fail(cmd, "--isa: unknown kernel set '%s' (ref, scalar, avx2, avx512)", v);
        } else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
            char *end;
            if (!(v = cli_value(cmd, argc, argv, &i))) return 1;
            seed = strtoull(v, &end, 10);
            if (end == v || *end || v[0] == '-') return cli_fail(cmd, "%s: '%s' is not a non-negative integer", a, v);
        } else if (!strcmp(a, "--json")) {
            if (!(json = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--no-membw")) {
            do_membw = false;
        } else if (!strcmp(a, "--membw-mib")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 1 << 20, &membw_mib)) return 1;
        } else if (!strcmp(a, "--membw-passes")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 1000, &membw_passes)) return 1;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
    }
    bool spec_bad, spec_on = cli_spec_enabled(cmd, &so, &spec_bad);
    if (spec_bad) return 1;
    if (spec != spec_on) return cli_fail(cmd, spec ? "--spec needs --draft or --lookup" : "--draft and --lookup need --spec");
    if (spec) {
        if (n_gen == 0) return cli_fail(cmd, "--spec needs -n > 0");
        if (n_threads != 1) return cli_fail(cmd, "--spec takes one thread count");
        cli_engine_opts eo = {.model = model_path,
                              .ctx = {.n_ctx = 2048, .n_threads = threads[0], .kv_type = kv_type, .isa_set = isa >= 0,
                                      .isa = isa >= 0 ? (slm_isa)isa : SLM_ISA_REF}};
        return bench_spec(cmd, &eo, &so, (int)n_gen, (int)reps, json);
    }
    if (n_prompt == 0 && n_gen == 0) return cli_fail(cmd, "-p 0 and -n 0: nothing to benchmark");
    if (isa >= 0 && isa != SLM_ISA_REF && !slm_kernels_get((slm_isa)isa))
        return cli_fail(cmd, "--isa: this CPU (or build) cannot run %s kernels", slm_isa_name((slm_isa)isa));
    const int ncpu = slm_cpu_count();
    for (int i = 0; i < n_threads; i++) {
        if (threads[i] == 0) threads[i] = ncpu;
        if (do_membw && ((size_t)membw_mib << 20) / (size_t)threads[i] < 4096)
            return cli_fail(cmd, "--membw-mib %ld is too small for %d threads (4 KiB per thread at least)", membw_mib,
                            threads[i]);
    }

    /* the model */
    char def[4096];
    const char *path = model_path ? model_path : slm_default_model_path(def, sizeof def);
    struct stat sst;
    if (!model_path && stat(path, &sst) != 0)
        return cli_fail(cmd, "default model %s not found: run scripts/fetch-model.sh, or give one with -m", path);
    slm_model *model = NULL;
    slm_status s = slm_model_load(path, &model);
    if (s) return cli_fail_status(cmd, s);

    int rc = 1;
    const int n_tests = (n_prompt > 0) + (n_gen > 0);
    const int n_rows = n_tests * n_threads;
    bench_row *rows = calloc((size_t)n_rows, sizeof *rows);
    slm_membw_result mb[MAX_THREAD_COUNTS + 1];
    int n_mb = 0;
    slm_sb js = {0};
    slm_afile af = {0};
    if (!rows) {
        cli_fail(cmd, "out of memory");
        goto out;
    }
    /* create the output file now, so a bad path fails before minutes of benchmarking */
    if (json && (s = slm_afile_open(&af, json))) {
        cli_fail_status(cmd, s);
        goto out;
    }
    slm_bench_model bm;
    slm_bench_model_info(model, &bm);
    char label[96];
    model_label(model, &bm, label, sizeof label);
    slm_isa isa_used = isa >= 0 ? (slm_isa)isa : slm_isa_default();
    const slm_config *cfg = &model->cfg;

    printf("model: %s\n", path);
    printf("architecture: %s, %d layers, dim %d, ffn %d, heads %d (kv %d), vocab %d\n", cfg->arch_name,
           cfg->n_layers, cfg->dim, cfg->ffn_dim, cfg->n_heads, cfg->n_kv_heads, cfg->vocab_size);
    printf("size: %llu bytes (%.2f MiB), %llu weights, %.3f bits per weight\n", (unsigned long long)bm.n_bytes,
           (double)bm.n_bytes / (1 << 20), (unsigned long long)bm.n_params, bm.bpw);
    printf("matrices:");
    for (int i = 0; i < bm.n_types; i++)
        printf("%s %s x%d (%.2f MiB)", i ? "," : "", slm_dtype_name(bm.types[i].type), bm.types[i].count,
               (double)bm.types[i].bytes / (1 << 20));
    printf("%s\n", model->tied_output ? "; output head tied to the embedding table" : "");
    fflush(stdout);

    /* the model tests, per thread count */
    const int n_ctx = (int)(n_prompt > n_gen ? n_prompt : n_gen);
    const int eff_batch = (int)(batch < n_ctx ? batch : n_ctx);
    int r = 0;
    for (int ti = 0; ti < n_threads; ti++) {
        slm_ctx_params cp = {.n_ctx = n_ctx, .max_batch = eff_batch, .n_threads = threads[ti], .kv_type = kv_type,
                             .isa_set = isa >= 0, .isa = isa >= 0 ? (slm_isa)isa : SLM_ISA_REF};
        slm_ctx *ctx = NULL;
        if ((s = slm_ctx_create(model, &cp, &ctx))) {
            cli_fail_status(cmd, s);
            goto out;
        }
        isa_used = ctx->isa;
        for (int k = 0; k < 2; k++) {
            slm_bench_kind kind = k == 0 ? SLM_BENCH_PP : SLM_BENCH_TG;
            int nt = (int)(k == 0 ? n_prompt : n_gen);
            if (nt == 0) continue;
            char name[32], lab[64];
            slm_bench_test_name(kind, nt, name, sizeof name);
            snprintf(lab, sizeof lab, "%s, %d thread%s", name, threads[ti], threads[ti] == 1 ? "" : "s");
            bench_row *row = &rows[r++];
            *row = (bench_row){.kind = kind, .n_tokens = nt, .threads = threads[ti]};
            if (!(row->samples = malloc((size_t)reps * sizeof *row->samples))) {
                slm_ctx_free(ctx);
                cli_fail(cmd, "out of memory");
                goto out;
            }
            slm_bench_params bp = {.kind = kind, .n_tokens = nt, .reps = (int)reps, .warmup = 1,
                                   .seed = seed, .progress = true, .label = lab};
            if ((s = slm_bench_run(ctx, &bp, row->samples, &row->st))) {
                slm_ctx_free(ctx);
                cli_fail_status(cmd, s);
                goto out;
            }
        }
        slm_ctx_free(ctx);
    }
    const double rss = peak_rss_bytes();
    const size_t llc = slm_membw_llc_bytes();
    const char *kv_name = kv_type == SLM_KV_F32 ? "f32" : "f16";
    const char *isa_name = slm_isa_name(isa_used);

    /* the bandwidth probe: 1 thread, then every other requested count */
    if (do_membw) {
        int want[MAX_THREAD_COUNTS + 1], n_want = 0;
        want[n_want++] = 1;
        for (int i = 0; i < n_threads; i++) {
            int dup = 0;
            for (int j = 0; j < n_want; j++) dup |= want[j] == threads[i];
            if (!dup) want[n_want++] = threads[i];
        }
        for (int i = 0; i < n_want; i++) {
            fprintf(stderr, "bench: memory bandwidth, %d thread%s, 3 x %ld MiB...\n", want[i], want[i] == 1 ? "" : "s",
                    membw_mib);
            slm_membw_params mp = {.array_bytes = (size_t)membw_mib << 20, .n_threads = want[i],
                                   .passes = (int)membw_passes};
            if ((s = slm_membw_run(&mp, &mb[n_mb]))) {
                cli_fail_status(cmd, s);
                goto out;
            }
            n_mb++;
        }
    }

    /* the report */
    printf("kernels: %s | KV cache: %s | batch: %d | runs: %ld timed + 1 warm-up | seed: %llu\n", isa_name, kv_name,
           eff_batch, reps, seed);
    printf("peak RSS: %.1f MiB (after the model tests, before the bandwidth probe)\n\n", rss / (1 << 20));
    printf("| %-20s | %10s | %5s | %7s | %-7s | %12s | %10s | %10s | %8s |\n", "model", "size", "bpw", "threads", "test",
           "t/s (median)", "min", "max", "sd");
    printf("| %s | %s: | %s: | %s: | %s | %s: | %s: | %s: | %s: |\n", "--------------------", "---------", "----",
           "------", "-------", "-----------", "---------", "---------", "-------");
    for (int i = 0; i < n_rows; i++) {
        char name[32], size[32];
        slm_bench_test_name(rows[i].kind, rows[i].n_tokens, name, sizeof name);
        snprintf(size, sizeof size, "%.2f MiB", (double)bm.n_bytes / (1 << 20));
        printf("| %-20s | %10s | %5.2f | %7d | %-7s | %12.2f | %10.2f | %10.2f | %8.2f |\n", label, size, bm.bpw,
               rows[i].threads, name, rows[i].st.median, rows[i].st.min, rows[i].st.max, rows[i].st.stddev);
    }
    if (n_mb) {
        printf("\nmemory bandwidth (STREAM-like, 3 x %ld MiB arrays of doubles, best of %ld passes;\n"
               "GB/s = 1e9 bytes read + written per second):\n",
               membw_mib, membw_passes);
        if (llc && 3 * mb[0].array_bytes < 4 * llc)
            printf("note: the arrays (3 x %ld MiB) are not much larger than the last-level cache (%.0f MiB):\n"
                   "the numbers may include cache bandwidth; use a larger --membw-mib\n",
                   membw_mib, (double)llc / (1 << 20));
        printf("| threads | copy GB/s | triad GB/s |\n| ------: | --------: | ---------: |\n");
        for (int i = 0; i < n_mb; i++)
            printf("| %7d | %9.2f | %10.2f |\n", mb[i].n_threads, mb[i].copy_gbs, mb[i].triad_gbs);
    }
    if (n_gen > 0) {
        printf("\ndecode bandwidth used: %.2f MB of weights read per generated token (%d layers x 7 matrices\n"
               "+ output head%s) x tg t/s, against the triad bandwidth:\n",
               (double)bm.decode_bytes / 1e6, cfg->n_layers,
               model->tied_output ? "; the tied embedding table counted once, as the head" : "");
        printf("| threads | tg t/s | weights GB/s | triad GB/s | %% of triad |\n"
               "| ------: | -----: | -----------: | ---------: | ---------: |\n");
        for (int i = 0; i < n_rows; i++) {
            if (rows[i].kind != SLM_BENCH_TG) continue;
            double gbs = (double)bm.decode_bytes * rows[i].st.median * 1e-9;
            const slm_membw_result *m = membw_for(mb, n_mb, rows[i].threads);
            if (m && m->triad_gbs > 0)
                printf("| %7d | %6.2f | %12.2f | %10.2f | %9.1f%% |\n", rows[i].threads, rows[i].st.median, gbs,
                       m->triad_gbs, 100.0 * gbs / m->triad_gbs);
            else
                printf("| %7d | %6.2f | %12.2f | %10s | %10s |\n", rows[i].threads, rows[i].st.median, gbs, "-", "-");
        }
    }
    fflush(stdout);

    if (json) {
        slm_sb_printf(&js, "{\n  \"model\": {\"file\": ");
        slm_sb_json_str(&js, path);
        slm_sb_printf(&js, ", \"label\": ");
        slm_sb_json_str(&js, label);
        slm_sb_printf(&js, ", \"architecture\": ");
        slm_sb_json_str(&js, cfg->arch_name);
        slm_sb_printf(&js,
                  ", \"n_layers\": %d, \"dim\": %d, \"vocab\": %d, \"n_params\": %llu, \"size_bytes\": %llu, "
                  "\"bpw\": %.6f, \"tied_output\": %s, \"decode_bytes_per_token\": %llu, \"matrices\": [",
                  cfg->n_layers, cfg->dim, cfg->vocab_size, (unsigned long long)bm.n_params,
                  (unsigned long long)bm.n_bytes, bm.bpw, model->tied_output ? "true" : "false",
                  (unsigned long long)bm.decode_bytes);
        for (int i = 0; i < bm.n_types; i++)
            slm_sb_printf(&js, "%s{\"type\": \"%s\", \"count\": %d, \"bytes\": %llu}", i ? ", " : "",
                      slm_dtype_name(bm.types[i].type), bm.types[i].count, (unsigned long long)bm.types[i].bytes);
        slm_sb_printf(&js, "]},\n  \"kernel_isa\": \"%s\", \"kv_type\": \"%s\", \"batch\": %d, \"reps\": %ld, "
                       "\"warmup\": 1, \"seed\": %llu, \"peak_rss_bytes\": %.0f,\n  \"results\": [",
                  isa_name, kv_name, eff_batch, reps, seed, rss);
        for (int i = 0; i < n_rows; i++) {
            char name[32];
            const bench_row *w = &rows[i];
            slm_bench_test_name(w->kind, w->n_tokens, name, sizeof name);
            slm_sb_printf(&js,
                      "%s\n    {\"test\": \"%s\", \"kind\": \"%s\", \"n_tokens\": %d, \"threads\": %d, "
                      "\"tps_median\": %.4f, \"tps_min\": %.4f, \"tps_max\": %.4f, \"tps_mean\": %.4f, "
                      "\"tps_stddev\": %.4f, \"samples\": [",
                      i ? "," : "", name, w->kind == SLM_BENCH_PP ? "pp" : "tg", w->n_tokens, w->threads,
                      w->st.median, w->st.min, w->st.max, w->st.mean, w->st.stddev);
            for (int k = 0; k < reps; k++) slm_sb_printf(&js, "%s%.4f", k ? ", " : "", w->samples[k]);
            slm_sb_printf(&js, "]}");
        }
        slm_sb_printf(&js, "\n  ],\n  \"membw\": ");
        if (n_mb) {
            slm_sb_printf(&js, "{\"array_bytes\": %zu, \"arrays\": 3, \"passes\": %ld, \"llc_bytes\": %zu, \"results\": [",
                      mb[0].array_bytes, membw_passes, llc);
            for (int i = 0; i < n_mb; i++)
                slm_sb_printf(&js, "%s{\"threads\": %d, \"copy_gbs\": %.4f, \"triad_gbs\": %.4f}", i ? ", " : "",
                          mb[i].n_threads, mb[i].copy_gbs, mb[i].triad_gbs);
            slm_sb_printf(&js, "]}");
        } else {
            slm_sb_printf(&js, "null");
        }
        slm_sb_printf(&js, ",\n  \"decode_bandwidth\": [");
        int first = 1;
        for (int i = 0; i < n_rows; i++) {
            if (rows[i].kind != SLM_BENCH_TG) continue;
            double gbs = (double)bm.decode_bytes * rows[i].st.median * 1e-9;
            const slm_membw_result *m = membw_for(mb, n_mb, rows[i].threads);
            slm_sb_printf(&js, "%s{\"threads\": %d, \"tg_tps\": %.4f, \"weights_gbs\": %.4f, ", first ? "" : ", ",
                      rows[i].threads, rows[i].st.median, gbs);
            if (m && m->triad_gbs > 0)
                slm_sb_printf(&js, "\"triad_gbs\": %.4f, \"fraction_of_triad\": %.6f}", m->triad_gbs, gbs / m->triad_gbs);
            else
                slm_sb_printf(&js, "\"triad_gbs\": null, \"fraction_of_triad\": null}");
            first = 0;
        }
        slm_sb_printf(&js, "]\n}\n");
        if (!commit_json(&af, &js, json)) goto out;
    }
    rc = 0;
out:
    slm_afile_abort(&af);
    free(js.p);
    if (rows)
        for (int i = 0; i < n_rows; i++) free(rows[i].samples);
    free(rows);
    slm_model_free(model);
    return rc;
}
