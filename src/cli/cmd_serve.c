/* cmd_serve.c - `slimlm serve`: an OpenAI-compatible HTTP server over the batching scheduler. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "common.h"
#include "core/paths.h"
#include "model/chat.h"
#include "server/server.h"

static const char *const usage =
    "usage: slimlm serve [-m MODEL] [options]\n"
    "\n"
    "Serve the model over HTTP with the OpenAI API: POST /v1/completions,\n"
    "POST /v1/chat/completions (streaming with \"stream\": true), GET /v1/models, GET /health,\n"
    "GET /metrics (Prometheus). Requests are batched together step by step (continuous\n"
    "batching). Prints \"listening on http://HOST:PORT\" to stderr when ready; SIGINT or\n"
    "SIGTERM stops it (running requests are cancelled) with exit status 0.\n"
    "\n"
    "  --host ADDR          address to bind (default 127.0.0.1)\n"
    "  --port N             port (default 8080; 0 picks a free one)\n"
    "  -c, --ctx N          longest sequence, prompt + generated (default: the model's, at most 8192)\n"
    "  --max-seqs N         sequences running at once (default 16)\n"
    "  --kv-tokens N        KV cache capacity in positions (default: what 512 MiB holds, at least\n"
    "                       one full context)\n"
    "  --max-batch N        tokens evaluated per step (default 512)\n"
    "  --max-queue N        waiting requests before 429 (default 256)\n"
    "  --max-body BYTES     largest request body (default 1048576)\n"
    "  --no-batching        one sequence at a time (baseline)\n"
    "  --no-prefix-cache    do not share prompt blocks between requests\n"
    "  --lookup N           speculative decoding by prompt lookup: each sequence drafts the tokens\n"
    "                       that followed the longest earlier match (n-gram of N down to 1 tokens,\n"
    "                       1..64) of its own prompt and output; verified exactly (greedy output\n"
    "                       unchanged)\n"
    "  --draft-max G        most tokens drafted per sequence and step with --lookup (1..16, default 4)\n"
    "  --template NAME      chat template: chatml, llama2, llama3, zephyr, gemma, phi3\n"
    "                       (default: detected from the model's tokenizer.chat_template)\n"
    "  -h, --help           this help\n"
    "\n";

static bool int_flag(const char *cmd, int argc, char **argv, int *i, long lo, long hi, long *out) {
    const char *a = argv[*i], *v = cli_value(cmd, argc, argv, i);
    return v && cli_int(cmd, a, v, lo, hi, out);
}

int cmd_serve(int argc, char **argv) {
    const char *cmd = "serve", *host = "127.0.0.1", *tname = NULL;
    cli_engine_opts eo = {0};
    long port = 8080, ctx = 0, max_seqs = 0, kv_tokens = 0, max_batch = 0, max_queue = 0, max_body = 1L << 20;
    long lookup = 0, draft_max = 0;
    bool no_batching = false, no_prefix = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_engine_flag(cmd, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            fputs(cli_engine_help, stdout);
            return 0;
        } else if (!strcmp(a, "--host")) {
            ok = (host = cli_value(cmd, argc, argv, &i)) != NULL;
        } else if (!strcmp(a, "--port")) {
            ok = int_flag(cmd, argc, argv, &i, 0, 65535, &port);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            ok = int_flag(cmd, argc, argv, &i, 2, 1 << 20, &ctx);
        } else if (!strcmp(a, "--max-seqs")) {
            ok = int_flag(cmd, argc, argv, &i, 1, 4096, &max_seqs);
        } else if (!strcmp(a, "--kv-tokens")) {
            ok = int_flag(cmd, argc, argv, &i, 16, 1 << 24, &kv_tokens);
        } else if (!strcmp(a, "--max-batch")) {
            ok = int_flag(cmd, argc, argv, &i, 1, 1 << 20, &max_batch);
        } else if (!strcmp(a, "--max-queue")) {
            ok = int_flag(cmd, argc, argv, &i, 1, 1 << 20, &max_queue);
        } else if (!strcmp(a, "--max-body")) {
            ok = int_flag(cmd, argc, argv, &i, 1024, 1L << 30, &max_body);
        } else if (!strcmp(a, "--no-batching")) {
            no_batching = true;
        } else if (!strcmp(a, "--no-prefix-cache")) {
            no_prefix = true;
        } else if (!strcmp(a, "--lookup")) {
            ok = int_flag(cmd, argc, argv, &i, 1, 64, &lookup);
        } else if (!strcmp(a, "--draft-max")) {
            ok = int_flag(cmd, argc, argv, &i, 1, SLM_SCHED_MAX_DRAFT, &draft_max);
        } else if (!strcmp(a, "--draft") || !strcmp(a, "--draft-layers") || !strcmp(a, "--draft-min-p")) {
            return cli_fail(cmd, "%s: serve supports speculative decoding by prompt lookup only (--lookup N)", a);
        } else if (!strcmp(a, "--template")) {
            ok = (tname = cli_value(cmd, argc, argv, &i)) != NULL;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
        if (!ok) return 1;
    }
    if (draft_max && !lookup) return cli_fail(cmd, "--draft-max needs --lookup");
    if (eo.ctx.kv_type != SLM_KV_F16) return cli_fail(cmd, "--kv-type: the server keeps its KV cache in f16");
    if (eo.ctx.isa_set) setenv("SLIMLM_ISA", slm_isa_name(eo.ctx.isa), 1); /* read when the engine starts */

    char def[4096];
    const char *path = eo.model ? eo.model : slm_default_model_path(def, sizeof def);
    struct stat sb;
    if (!eo.model && stat(path, &sb) != 0)
        return cli_fail(cmd, "default model %s not found: run scripts/fetch-model.sh, or give one with -m", path);
    slm_model *m = NULL;
    slm_tokenizer *tok = NULL;
    slm_status s = slm_model_load(path, &m);
    if (s) return cli_fail_status(cmd, s);
    if ((s = slm_tokenizer_load(m->gguf, &tok))) {
        slm_model_free(m);
        return cli_fail(cmd, "%s: %s", path, slm_last_error());
    }

    slm_chat_template tmpl;
    bool have_tmpl;
    if (tname) {
        if ((s = slm_chat_by_name(tname, &tmpl))) {
            slm_tokenizer_free(tok);
            slm_model_free(m);
            return cli_fail_status(cmd, s);
        }
        have_tmpl = true;
    } else {
        slm_gguf_str ts = {0};
        have_tmpl = slm_gguf_get_str(m->gguf, "tokenizer.chat_template", &ts) == SLM_OK &&
                    slm_chat_detect(ts.ptr, ts.len, &tmpl) == SLM_OK;
        if (!have_tmpl) fprintf(stderr, "slimlm serve: no usable chat template; /v1/chat/completions is off\n");
    }
    char alias[256] = "";
    slm_gguf_str gn = {0};
    if (slm_gguf_get_str(m->gguf, "general.name", &gn) == SLM_OK && gn.len > 0)
        snprintf(alias, sizeof alias, "%.*s", (int)(gn.len < 255 ? gn.len : 255), gn.ptr);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;

    int model_ctx = m->cfg.ctx_len > 0 ? m->cfg.ctx_len : 2048;
    if (ctx == 0) ctx = model_ctx < 8192 ? model_ctx : 8192;
    srv_config cfg = {
        .host = host,
        .port = (int)port,
        .max_body = (size_t)max_body,
        .sched = {.max_seqs = (int)max_seqs, .max_batch_tokens = (int)max_batch, .kv_tokens = (int)kv_tokens,
                  .max_ctx = (int)ctx, .max_queue = (int)max_queue, .n_threads = eo.ctx.n_threads,
                  .no_batching = no_batching, .no_prefix_cache = no_prefix, .lookup_ngram = (int)lookup,
                  .draft_max = (int)draft_max},
        .model_id = base,
        .model_alias = alias[0] ? alias : NULL,
        .tmpl = have_tmpl ? &tmpl : NULL,
    };

    /* SIGINT/SIGTERM are taken synchronously by this thread: blocked here before any thread
     * starts, so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    srv_server *srv = NULL;
    if ((s = srv_server_start(m, tok, &cfg, &srv))) {
        slm_tokenizer_free(tok);
        slm_model_free(m);
        return cli_fail_status(cmd, s);
    }
    fprintf(stderr, strchr(host, ':') ? "listening on http://[%s]:%d\n" : "listening on http://%s:%d\n", host,
            srv_server_port(srv));
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "slimlm serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    srv_server_stop(srv);
    slm_tokenizer_free(tok);
    slm_model_free(m);
    return 0;
}
