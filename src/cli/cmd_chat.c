/* cmd_chat.c - `slimlm chat`: an interactive multi-turn conversation.
 *
 * Each turn renders the whole conversation with the chat template and tokenizes it; the
 * tokens already in the KV cache (the common prefix) are kept, so a turn only evaluates the
 * new text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "model/chat.h"
#include "model/generate.h"
#include "spec_flags.h"

static const char *const usage =
    "usage: slimlm chat [-m MODEL] [options]\n"
    "\n"
    "Chat with the model on the terminal: one line per message; the conversation and its KV\n"
    "cache are kept between turns. Type /reset to start over, /exit (or end of input) to quit.\n"
    "\n"
    "  --system TEXT        system message (default: the template's own, if any)\n"
    "  --template NAME      chat template: chatml, llama2, llama3, zephyr, gemma, phi3\n"
    "                       (default: detected from the model's tokenizer.chat_template)\n"
    "  -n, --n-predict N    tokens per reply at most (default 512)\n"
    "  -c, --ctx N          context size in tokens (default: min(model's, 4096))\n"
    "  -v, --verbose        after each reply, print token counts and speed to stderr\n"
    "  -h, --help           this help\n"
    "\n";

typedef struct {
    slm_chat_msg *m;
    int n, cap;
} conv;

static bool conv_add(conv *c, const char *role, const char *text, size_t len) {
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        slm_chat_msg *m = realloc(c->m, (size_t)cap * sizeof *m);
        if (!m) return false;
        c->m = m;
        c->cap = cap;
    }
    char *s = malloc(len + 1);
    if (!s) return false;
    memcpy(s, text, len);
    s[len] = 0;
    c->m[c->n++] = (slm_chat_msg){role, s};
    return true;
}

static void conv_pop(conv *c) {
    if (c->n > 0) free((char *)c->m[--c->n].content);
}

typedef struct {
    const slm_tokenizer *tok;
    slm_detok dt;
    char *text;
    size_t n, cap;
} reply;

static bool on_token(void *user, int32_t id) {
    reply *r = user;
    char buf[256];
    size_t n = slm_detok_push(&r->dt, r->tok, id, false, buf, sizeof buf);
    fwrite(buf, 1, n, stdout);
    fflush(stdout);
    if (r->n + n + 1 > r->cap) {
        size_t cap = (r->cap ? r->cap : 1024);
        while (cap < r->n + n + 1) cap *= 2;
        char *t = realloc(r->text, cap);
        if (!t) return false;
        r->text = t;
        r->cap = cap;
    }
    memcpy(r->text + r->n, buf, n);
    r->n += n;
    r->text[r->n] = 0;
    return true;
}

int cmd_chat(int argc, char **argv) {
    cli_engine_opts eo = {0};
    const char *cmd = "chat", *system = NULL, *tname = NULL;
    long n_predict = 512, n_ctx = 0;
    bool verbose = false;
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
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "--system")) {
            if (!(system = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--template")) {
            if (!(tname = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            const char *v = cli_value(cmd, argc, argv, &i);
            if (!v || !cli_int(cmd, a, v, 1, 1 << 24, &n_predict)) return 1;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            const char *v = cli_value(cmd, argc, argv, &i);
            if (!v || !cli_int(cmd, a, v, 16, 1 << 22, &n_ctx)) return 1;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
    }
    bool spec_bad, spec = cli_spec_enabled(cmd, &so, &spec_bad);
    if (spec_bad) return 1;
    cli_engine e;
    eo.ctx.n_ctx = (int)n_ctx;
    if (!cli_engine_load(cmd, &eo, true, &e)) return 1;
    int rc = 1;
    cli_spec cs = {0};
    if (spec && !cli_spec_load(cmd, &so, &e, &sp, &cs)) {
        cli_engine_free(&e);
        return 1;
    }
    slm_chat_template t;
    slm_status s;
    if (tname) {
        s = slm_chat_by_name(tname, &t);
    } else {
        slm_gguf_str ts = {0};
        slm_gguf_get_str(e.model->gguf, "tokenizer.chat_template", &ts);
        s = slm_chat_detect(ts.ptr, ts.len, &t);
    }
    if (s) {
        cli_spec_free(&cs);
        cli_engine_free(&e);
        return cli_fail_status(cmd, s);
    }
    slm_sampler *smp = NULL;
    float *logits = malloc((size_t)e.model->cfg.vocab_size * sizeof *logits);
    conv c = {0};
    char *line = NULL;
    size_t line_cap = 0;
    if (!logits) {
        cli_fail(cmd, "out of memory");
        goto out;
    }
    if ((s = slm_sampler_create(&sp, e.model->cfg.vocab_size, &smp))) {
        cli_fail_status(cmd, s);
        goto out;
    }
    if (system && !conv_add(&c, "system", system, strlen(system))) goto oom;
    const bool tty = isatty(0) && isatty(1);
    if (tty)
        fprintf(stderr, "chat template %s, context %d tokens. /reset starts over, /exit quits.\n",
                slm_chat_kind_name(t.kind), e.ctx->p.n_ctx);
    for (;;) {
        if (tty) fputs("> ", stdout), fflush(stdout);
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (got == 0) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            while (c.n > (system ? 1 : 0)) conv_pop(&c);
            slm_ctx_truncate(e.ctx, 0);
            fprintf(stderr, "(conversation reset)\n");
            continue;
        }
        if (!conv_add(&c, "user", line, (size_t)got)) goto oom;
        char *prompt = NULL;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if ((s = slm_chat_render(&t, c.m, c.n, true, &prompt)) ||
            (s = slm_tokenizer_encode(e.tok, prompt, strlen(prompt), true, true, &ids, &n_ids))) {
            free(prompt);
            cli_fail_status(cmd, s);
            goto out;
        }
        free(prompt);
        long room = e.ctx->p.n_ctx - (long)n_ids;
        if (room < 1) {
            free(ids);
            conv_pop(&c);
            fprintf(stderr, "slimlm chat: the conversation fills the context (%d tokens): /reset to start over\n",
                    e.ctx->p.n_ctx);
            continue;
        }
        reply r = {.tok = e.tok};
        slm_gen_stats st;
        slm_spec_stats sst;
        if (spec) {
            s = slm_spec_generate(e.ctx, e.tok, smp, cs.d, &cs.sp, ids, (int)n_ids,
                                  (int)(n_predict < room ? n_predict : room), on_token, &r, &sst);
            st = sst.gen;
        } else {
            s = slm_generate(e.ctx, e.tok, smp, ids, (int)n_ids, (int)(n_predict < room ? n_predict : room), logits,
                             on_token, &r, &st);
        }
        free(ids);
        char tail[16];
        size_t tl = slm_detok_flush(&r.dt, tail, sizeof tail);
        fwrite(tail, 1, tl, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        if (s) {
            free(r.text);
            cli_fail_status(cmd, s);
            goto out;
        }
        if (verbose)
            fprintf(stderr, "[prompt: %d tokens reused from the cache, %d evaluated (%.1f tok/s); reply: %d tokens (%.1f tok/s)]\n",
                    st.n_reused, st.n_prompt, st.prompt_s > 0 ? st.n_prompt / st.prompt_s : 0.0, st.n_generated,
                    st.gen_s > 0 ? st.n_generated / st.gen_s : 0.0);
        if (verbose && spec) cli_spec_print_stats(&so, &sst);
        bool ok = conv_add(&c, "assistant", r.text ? r.text : "", r.n);
        free(r.text);
        if (!ok) goto oom;
    }
    rc = 0;
    goto out;
oom:
    cli_fail(cmd, "out of memory");
out:
    free(line);
    while (c.n) conv_pop(&c);
    free(c.m);
    free(logits);
    slm_sampler_free(smp);
    cli_spec_free(&cs);
    cli_engine_free(&e);
    return rc;
}
