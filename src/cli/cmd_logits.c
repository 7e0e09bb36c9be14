/* cmd_logits.c - `slimlm logits`: raw logits of every position, for oracles and tools. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "core/atomic_file.h"

static const char *const usage =
    "usage: slimlm logits [-m MODEL] (--ids 1,2,3 | -p PROMPT) --out FILE [-b BATCH]\n"
    "\n"
    "Run the model over a token sequence and write the logits of every position as raw\n"
    "little-endian float32, shape [n_tokens][n_vocab].\n"
    "\n"
    "  --ids LIST         comma-separated token ids\n"
    "  -p, --prompt TEXT  text, tokenized without added BOS, special tokens parsed\n"
    "  --out FILE         output file (written atomically)\n"
    "  -b, --batch N      tokens per forward pass (default 256; 1 = token by token)\n"
    "  -h, --help         this help\n";

int cmd_logits(int argc, char **argv) {
    cli_engine_opts eo = {0};
    const char *cmd = "logits", *ids_arg = NULL, *prompt = NULL, *outp = NULL;
    long batch = 256;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_engine_flag(cmd, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            fputs(cli_engine_help, stdout);
            return 0;
        } else if (!strcmp(a, "--ids")) {
            if (!(ids_arg = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--out")) {
            if (!(outp = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
            const char *v = cli_value(cmd, argc, argv, &i);
            if (!v || !cli_int(cmd, a, v, 1, 1 << 16, &batch)) return 1;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
    }
    if (!!ids_arg + !!prompt != 1) return cli_fail(cmd, "give exactly one of --ids or -p (see --help)");
    if (!outp) return cli_fail(cmd, "--out FILE is required");
    cli_engine e;
    if (!cli_engine_load(cmd, &eo, prompt != NULL, &e)) return 1;
    int rc = 1, n = 0;
    int32_t *ids = NULL;
    float *logits = NULL;
    slm_status s;
    if (ids_arg) {
        if (!cli_parse_ids(cmd, ids_arg, &ids, &n)) goto out;
    } else {
        size_t nn;
        if ((s = slm_tokenizer_encode(e.tok, prompt, strlen(prompt), false, true, &ids, &nn))) {
            cli_fail_status(cmd, s);
            goto out;
        }
        if (nn == 0) {
            cli_fail(cmd, "the prompt is empty");
            goto out;
        }
        n = (int)nn;
    }
    const int vocab = e.model->cfg.vocab_size;
    if (n > e.ctx->p.n_ctx) {
        cli_fail(cmd, "%d tokens exceed the context size %d", n, e.ctx->p.n_ctx);
        goto out;
    }
    if (!(logits = malloc((size_t)n * vocab * sizeof *logits))) {
        cli_fail(cmd, "out of memory");
        goto out;
    }
    for (int done = 0; done < n;) {
        int nb = n - done < batch ? n - done : (int)batch;
        if ((s = slm_ctx_eval(e.ctx, ids + done, nb, nb, logits + (size_t)done * vocab))) {
            cli_fail_status(cmd, s);
            goto out;
        }
        done += nb;
    }
    slm_afile f;
    if ((s = slm_afile_open(&f, outp))) {
        cli_fail_status(cmd, s);
        goto out;
    }
    slm_afile_write(&f, logits, (size_t)n * vocab * sizeof *logits);
    if ((s = slm_afile_commit(&f))) {
        cli_fail_status(cmd, s);
        goto out;
    }
    rc = 0;
out:
    free(logits);
    free(ids);
    cli_engine_free(&e);
    return rc;
}
