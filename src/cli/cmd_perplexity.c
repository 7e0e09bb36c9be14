/* cmd_perplexity.c - `slimlm perplexity`: perplexity of a text, and KL against a base model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "core/atomic_file.h"
#include "core/strbuf.h"
#include "eval/perplexity.h"

static const char *const usage =
    "usage: slimlm perplexity [-m MODEL] -f TEXT [options]\n"
    "\n"
    "Perplexity of a text file. The text is tokenized whole and cut into non-overlapping windows\n"
    "of --ctx tokens (a trailing partial window is dropped); each window starts from an empty\n"
    "cache and the tokens of its second half are scored (llama.cpp's scheme, so numbers are\n"
    "comparable). If the model adds BOS, each window starts with BOS.\n"
    "\n"
    "  -f, --file PATH        text to evaluate (e.g. ../shared/data/wikitext2-test.txt)\n"
    "  --ctx N                window size in tokens (default 512)\n"
    "  --chunks N             evaluate only the first N windows (default: all)\n"
    "  --save-base FILE       save this model's top-k log-probabilities per scored position\n"
    "  --kl-base FILE         compare with a saved base: KL(base||model) mean and p99, top-1\n"
    "                         agreement, perplexity ratio (same text, --ctx and --chunks)\n"
    "  --top-k K              entries per position in --save-base (default 32)\n"
    "  --json FILE            also write the results as JSON\n"
    "  -h, --help             this help\n";

int cmd_perplexity(int argc, char **argv) {
    cli_engine_opts eo = {0};
    const char *cmd = "perplexity", *file = NULL, *json = NULL;
    slm_ppl_params pp = {.n_ctx = 512, .top_k = 32, .progress = true};
    long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        int r = cli_engine_flag(cmd, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            fputs(cli_engine_help, stdout);
            return 0;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(file = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 4, 1 << 15, &v)) return 1;
            pp.n_ctx = (int)v;
        } else if (!strcmp(a, "--chunks")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 1, 1 << 30, &v)) return 1;
            pp.n_chunks = (int)v;
        } else if (!strcmp(a, "--top-k")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 1, 4096, &v)) return 1;
            pp.top_k = (int)v;
        } else if (!strcmp(a, "--save-base")) {
            if (!(pp.save_base = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--kl-base")) {
            if (!(pp.kl_base = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--json")) {
            if (!(json = cli_value(cmd, argc, argv, &i))) return 1;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
    }
    if (!file) return cli_fail(cmd, "-f TEXT is required (see --help)");
    size_t len;
    char *text = cli_read_file(cmd, file, &len);
    if (!text) return 1;
    cli_engine e;
    eo.ctx.n_ctx = pp.n_ctx;
    eo.ctx.max_batch = pp.n_ctx < 512 ? pp.n_ctx : 512;
    if (!cli_engine_load(cmd, &eo, true, &e)) {
        free(text);
        return 1;
    }
    int rc = 1;
    int32_t *ids = NULL;
    size_t n;
    slm_status s = slm_tokenizer_encode(e.tok, text, len, true, false, &ids, &n);
    if (s) {
        cli_fail_status(cmd, s);
        goto out;
    }
    if (n < (size_t)pp.n_ctx) {
        cli_fail(cmd, "%s has %zu tokens, fewer than one window of %d (use a smaller --ctx)", file, n, pp.n_ctx);
        goto out;
    }
    pp.bos = slm_tokenizer_add_bos(e.tok) ? slm_tokenizer_bos(e.tok) : -1;
    fprintf(stderr, "%s: %zu bytes, %zu tokens; window %d, %zu windows available%s; kernels %s, %d threads, kv %s\n",
            file, len, n, pp.n_ctx, n / (size_t)pp.n_ctx, pp.n_chunks ? "" : " (all evaluated)",
            slm_isa_name(e.ctx->isa), slm_pool_size(e.ctx->pool), e.ctx->kv->type == SLM_KV_F16 ? "f16" : "f32");
    slm_ppl_result r;
    if ((s = slm_perplexity(e.ctx, ids, n, &pp, &r))) {
        cli_fail_status(cmd, s);
        goto out;
    }
    if (e.ctx->exit_tokens > 0)
        printf("early exit: %.2f layers per token on average (of %d; cosine >= %g from layer %d)\n",
               (double)e.ctx->exit_layers / (double)e.ctx->exit_tokens, e.model->cfg.n_layers, e.ctx->p.early_exit,
               e.ctx->p.exit_min);
    printf("perplexity: %.4f +/- %.4f (%d windows of %d, %ld tokens scored, %.1f tok/s)\n", r.ppl,
           r.ppl * r.nll_stderr, r.n_chunks, pp.n_ctx, r.n_scored, r.tokens_per_s);
    if (r.has_kl) {
        printf("base perplexity: %.4f, ratio %.5f\n", r.base_ppl, r.ppl_ratio);
        printf("KL(base||model): mean %.6f +/- %.6f, p99 %.6f, max %.6f (top-k partition)\n", r.kl_mean, r.kl_stderr,
               r.kl_p99, r.kl_max);
        printf("top-1 agreement: %.4f\n", r.top1_agree);
    }
    if (pp.save_base) printf("saved base: %s\n", pp.save_base);
    if (json) {
        slm_sb js = {0};
        slm_sb_printf(&js, "{\"file\": ");
        slm_sb_json_str(&js, file);
        slm_sb_printf(&js,
                      ", \"ctx\": %d, \"chunks\": %d, \"scored\": %ld, \"ppl\": %.6f, \"nll_mean\": %.8f, "
                      "\"nll_stderr\": %.8f, \"tokens_per_s\": %.2f, \"kernels\": \"%s\", \"threads\": %d, "
                      "\"kv_type\": \"%s\"",
                      pp.n_ctx, r.n_chunks, r.n_scored, r.ppl, r.nll_mean, r.nll_stderr, r.tokens_per_s,
                      slm_isa_name(e.ctx->isa), slm_pool_size(e.ctx->pool),
                      e.ctx->kv->type == SLM_KV_F16 ? "f16" : "f32");
        if (r.has_kl)
            slm_sb_printf(&js,
                          ", \"base_ppl\": %.6f, \"ppl_ratio\": %.6f, \"kl_mean\": %.8f, \"kl_p99\": %.8f, "
                          "\"kl_max\": %.8f, \"top1_agree\": %.6f",
                          r.base_ppl, r.ppl_ratio, r.kl_mean, r.kl_p99, r.kl_max, r.top1_agree);
        slm_sb_printf(&js, "}\n");
        slm_afile f;
        if (js.oom) {
            slm_sb_free(&js);
            cli_fail(cmd, "out of memory");
            goto out;
        }
        if ((s = slm_afile_open(&f, json))) {
            slm_sb_free(&js);
            cli_fail_status(cmd, s);
            goto out;
        }
        slm_afile_write(&f, js.p, js.len);
        slm_sb_free(&js);
        if ((s = slm_afile_commit(&f))) {
            cli_fail_status(cmd, s);
            goto out;
        }
    }
    rc = 0;
out:
    free(ids);
    free(text);
    cli_engine_free(&e);
    return rc;
}
