/* cmd_run.c - `slimlm run`: generate text from a prompt, streaming it to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "model/chat.h"
#include "model/generate.h"
#include "spec_flags.h"

static const char *const usage =
    "usage: slimlm run [-m MODEL] (-p PROMPT | -f FILE | --ids 1,2,3) [options]\n"
    "\n"
    "Generate text from a prompt with the model, streaming tokens to stdout.\n"
    "\n"
    "  -p, --prompt TEXT    prompt text\n"
    "  -f, --file PATH      read the prompt from a file\n"
    "  --ids LIST           prompt as comma-separated token ids (skips the tokenizer)\n"
    "  -n, --n-predict N    tokens to generate at most (default 128)\n"
    "  -c, --ctx N          context size in tokens (default: min(model's, 4096))\n"
    "  --chat               wrap the prompt as one user turn in the model's chat template\n"
    "  --no-special         treat special-token text in the prompt as plain text\n"
    "  --print-ids          print generated token ids (space-separated) instead of text\n"
    "  --no-stats           do not print speed statistics to stderr\n"
    "  -h, --help           this help\n"
    "\n";

typedef struct {
    const slm_tokenizer *tok;
    slm_detok dt;
    bool print_ids;
    int count;
} run_out;

static bool emit(void *user, int32_t id) {
    run_out *o = user;
    if (o->print_ids) {
        printf(o->count++ ? " %d" : "%d", id);
    } else {
        char buf[256];
        size_t n = slm_detok_push(&o->dt, o->tok, id, false, buf, sizeof buf);
        fwrite(buf, 1, n, stdout);
    }
    fflush(stdout);
    return true;
}

int cmd_run(int argc, char **argv) {
    const char *cmd = "run";
    cli_engine_opts eo = {0};
    const char *prompt = NULL, *file = NULL, *ids_arg = NULL;
    long n_predict = 128, n_ctx = 0;
    bool chat = false, special = true, print_ids = false, stats = true;
    slm_sampler_params sp = slm_sampler_defaults();
    cli_spec_opts so;
    cli_spec_defaults(&so);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_sampling_flag(cmd, argc, argv, &i, &sp);
        if (r == 0) r = cli_engine_flag(cmd, argc, argv, &i, &eo);
        if (r == 0) r = cli_spec_flag(cmd, argc, argv, &i, &so);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            fputs(cli_engine_help, stdout);
            fputs(cli_sampling_help, stdout);
            fputs(cli_spec_help, stdout);
            return 0;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(file = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--ids")) {
            if (!(ids_arg = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            const char *v = cli_value(cmd, argc, argv, &i);
            if (!v || !cli_int(cmd, a, v, 0, 1 << 24, &n_predict)) return 1;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            const char *v = cli_value(cmd, argc, argv, &i);
            if (!v || !cli_int(cmd, a, v, 1, 1 << 22, &n_ctx)) return 1;
        } else if (!strcmp(a, "--chat")) {
            chat = true;
        } else if (!strcmp(a, "--no-special")) {
            special = false;
        } else if (!strcmp(a, "--print-ids")) {
            print_ids = true;
        } else if (!strcmp(a, "--no-stats")) {
            stats = false;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
    }
    if (!!prompt + !!file + !!ids_arg != 1) return cli_fail(cmd, "give exactly one of -p, -f or --ids (see --help)");
    if (chat && ids_arg) return cli_fail(cmd, "--chat needs a text prompt, not --ids");
    bool spec_bad, spec = cli_spec_enabled(cmd, &so, &spec_bad);
    if (spec_bad) return 1;

    char *text = NULL;
    size_t text_len = 0;
    if (file && !(text = cli_read_file(cmd, file, &text_len))) return 1;
    if (prompt) text_len = strlen(prompt);

    cli_engine e;
    eo.ctx.n_ctx = (int)n_ctx;
    if (!cli_engine_load(cmd, &eo, true, &e)) {
        free(text);
        return 1;
    }
    int rc = 1;
    int32_t *ids = NULL;
    int n_ids = 0;
    float *logits = NULL;
    slm_sampler *smp = NULL;
    char *rendered = NULL;
    cli_spec cs = {0};
    slm_status s;
    if (spec && !cli_spec_load(cmd, &so, &e, &sp, &cs)) goto out;
    if (ids_arg) {
        if (!cli_parse_ids(cmd, ids_arg, &ids, &n_ids)) goto out;
    } else {
        const char *src = prompt ? prompt : text;
        size_t len = text_len;
        if (chat) {
            slm_gguf_str ts = {0};
            slm_chat_template t;
            slm_gguf_get_str(e.model->gguf, "tokenizer.chat_template", &ts);
            slm_chat_msg msg = {"user", src};
            if ((s = slm_chat_detect(ts.ptr, ts.len, &t)) || (s = slm_chat_render(&t, &msg, 1, true, &rendered))) {
                cli_fail_status(cmd, s);
                goto out;
            }
            src = rendered;
            len = strlen(rendered);
        }
        size_t n;
        if ((s = slm_tokenizer_encode(e.tok, src, len, true, special, &ids, &n))) {
            cli_fail_status(cmd, s);
            goto out;
        }
        if (n == 0) {
            cli_fail(cmd, "the prompt is empty");
            goto out;
        }
        if (n > (size_t)e.ctx->p.n_ctx) {
            cli_fail(cmd, "the prompt has %zu tokens, more than the context size %d (use -c)", n, e.ctx->p.n_ctx);
            goto out;
        }
        n_ids = (int)n;
    }
    if (n_ids + n_predict > e.ctx->p.n_ctx) {
        long room = e.ctx->p.n_ctx - n_ids;
        if (room < 1) {
            cli_fail(cmd, "the prompt (%d tokens) fills the context size %d (use -c)", n_ids, e.ctx->p.n_ctx);
            goto out;
        }
        n_predict = room;
    }
    if ((s = slm_sampler_create(&sp, e.model->cfg.vocab_size, &smp))) {
        cli_fail_status(cmd, s);
        goto out;
    }
    if (!(logits = malloc((size_t)e.model->cfg.vocab_size * sizeof *logits))) {
        cli_fail(cmd, "out of memory");
        goto out;
    }
    run_out o = {.tok = e.tok, .print_ids = print_ids};
    if (!print_ids && !ids_arg && !chat) fwrite(prompt ? prompt : text, 1, text_len, stdout);
    slm_spec_stats sst = {0};
    slm_gen_stats st;
    if (spec) {
        s = slm_spec_generate(e.ctx, e.tok, smp, cs.d, &cs.sp, ids, n_ids, (int)n_predict, emit, &o, &sst);
        st = sst.gen;
    } else {
        s = slm_generate(e.ctx, e.tok, smp, ids, n_ids, (int)n_predict, logits, emit, &o, &st);
    }
    if (!print_ids) {
        char buf[16];
        fwrite(buf, 1, slm_detok_flush(&o.dt, buf, sizeof buf), stdout);
    }
    putchar('\n');
    fflush(stdout);
    if (s) {
        cli_fail_status(cmd, s);
        goto out;
    }
    if (stats)
        fprintf(stderr, "prompt: %d tokens, %.1f tok/s | generated: %d tokens, %.1f tok/s%s | %s, %d threads\n",
                st.n_prompt, st.prompt_s > 0 ? st.n_prompt / st.prompt_s : 0.0, st.n_generated,
                st.gen_s > 0 ? st.n_generated / st.gen_s : 0.0, st.hit_eog ? " (end of text)" : "",
                slm_isa_name(e.ctx->isa), slm_pool_size(e.ctx->pool));
    if (stats && spec) cli_spec_print_stats(&so, &sst);
    if (stats && e.ctx->exit_tokens > 0)
        fprintf(stderr, "early exit: %.2f layers per generated token on average (of %d)\n",
                (double)e.ctx->exit_layers / (double)e.ctx->exit_tokens, e.model->cfg.n_layers);
    rc = 0;
out:
    cli_spec_free(&cs);
    free(rendered);
    free(logits);
    slm_sampler_free(smp);
    free(ids);
    free(text);
    cli_engine_free(&e);
    return rc;
}
