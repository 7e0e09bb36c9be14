/* spec_flags.c - speculative decoding flags and drafter setup for the CLI. */
#include "spec_flags.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

const char *const cli_spec_help =
    "\n"
    "Speculative decoding (output identical to plain decoding: greedy token for token, sampled\n"
    "with the same distribution):\n"
    "  --draft PATH         draft model with the same vocabulary (a smaller or compressed model)\n"
    "  --draft-layers K     self-speculative: the target's own first K layers and its output head\n"
    "                       draft (no second model; a cache of K layers)\n"
    "  --lookup N           prompt lookup: draft the tokens that followed the longest earlier\n"
    "                       match of the last N..1 tokens (N in [1, 16])\n"
    "  --draft-max G        tokens drafted per step at most, [1, 64] (default 4);\n"
    "                       the length adapts to the acceptance within [1, G]\n"
    "  --draft-min-p P      a draft model (or --draft-layers) stops drafting when its top probability is below P\n"
    "                       (default 0.4; 0: never)\n";

void cli_spec_defaults(cli_spec_opts *o) { *o = (cli_spec_opts){.draft = NULL, .lookup = 0, .draft_max = 0, .min_p = -1}; }

int cli_spec_flag(const char *cmd, int argc, char **argv, int *i, cli_spec_opts *o) {
    const char *a = argv[*i], *v;
    long l;
    double d;
    if (!strcmp(a, "--draft")) {
        if (!(o->draft = cli_value(cmd, argc, argv, i))) return -1;
    } else if (!strcmp(a, "--draft-layers")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, a, v, 1, 4096, &l)) return -1;
        o->draft_layers = (int)l;
    } else if (!strcmp(a, "--lookup")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, a, v, 1, 16, &l)) return -1;
        o->lookup = (int)l;
    } else if (!strcmp(a, "--draft-max")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, a, v, 1, 64, &l)) return -1;
        o->draft_max = (int)l;
    } else if (!strcmp(a, "--draft-min-p")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_float(cmd, a, v, 0, 1, &d)) return -1;
        o->min_p = d;
    } else {
        return 0;
    }
    return 1;
}

bool cli_spec_enabled(const char *cmd, const cli_spec_opts *o, bool *bad) {
    *bad = false;
    if ((o->draft != NULL) + (o->lookup > 0) + (o->draft_layers > 0) > 1) {
        *bad = true;
        cli_fail(cmd, "--draft, --draft-layers and --lookup exclude each other");
        return false;
    }
    if (!o->draft && !o->lookup && !o->draft_layers && (o->draft_max || o->min_p >= 0)) {
        *bad = true;
        cli_fail(cmd, "--draft-max and --draft-min-p need --draft, --draft-layers or --lookup");
        return false;
    }
    if (o->lookup && o->min_p >= 0) {
        *bad = true;
        cli_fail(cmd, "--draft-min-p applies to --draft and --draft-layers only");
        return false;
    }
    return o->draft || o->lookup || o->draft_layers;
}

bool cli_spec_load(const char *cmd, const cli_spec_opts *o, const cli_engine *target, const slm_sampler_params *sp,
                   cli_spec *out) {
    memset(out, 0, sizeof *out);
    slm_status s;
    out->sp.adaptive = true;
    if (o->lookup) {
        out->sp.draft_max = o->draft_max ? o->draft_max : CLI_DRAFT_MAX_LOOKUP;
        if ((s = slm_drafter_lookup_create(o->lookup, &out->d))) return cli_fail_status(cmd, s), false;
        return true;
    }
    out->sp.draft_max = o->draft_max ? o->draft_max : CLI_DRAFT_MAX_MODEL;
    const float min_p = (float)(o->min_p >= 0 ? o->min_p : CLI_DRAFT_MIN_P);
    if (o->draft_layers) {
        /* the target's own first K layers: its model, a second context of K layers */
        if (o->draft_layers >= target->model->cfg.n_layers)
            return cli_fail(cmd, "--draft-layers %d: the model has %d layers", o->draft_layers,
                            target->model->cfg.n_layers), false;
        slm_ctx_params cp = target->ctx->p;
        cp.shared_pool = target->ctx->pool;
        cp.n_layers = o->draft_layers;
        if ((s = slm_drafter_model_create(target->model, &cp, sp, min_p, &out->d)))
            return cli_fail(cmd, "--draft-layers: %s", slm_last_error()), false;
        return true;
    }
    struct stat st;
    if (stat(o->draft, &st) != 0) return cli_fail(cmd, "--draft: %s: no such file", o->draft), false;
    if ((s = slm_model_load(o->draft, &out->model))) return cli_fail(cmd, "--draft: %s", slm_last_error()), false;
    if ((s = slm_tokenizer_load(out->model->gguf, &out->tok)) ||
        (s = slm_spec_check_vocab(target->model, target->tok, out->model, out->tok))) {
        cli_fail(cmd, "--draft %s: %s", o->draft, slm_last_error());
        cli_spec_free(out);
        return false;
    }
    slm_ctx_params cp = target->ctx->p;
    cp.shared_pool = target->ctx->pool; /* one set of workers: draft and target never run at once */
    if ((s = slm_drafter_model_create(out->model, &cp, sp, min_p, &out->d))) {
        cli_fail(cmd, "--draft %s: %s", o->draft, slm_last_error());
        cli_spec_free(out);
        return false;
    }
    return true;
}

void cli_spec_free(cli_spec *s) {
    slm_drafter_free(s->d);
    slm_tokenizer_free(s->tok);
    slm_model_free(s->model);
    memset(s, 0, sizeof *s);
}

void cli_spec_print_stats(const cli_spec_opts *o, const slm_spec_stats *st) {
    char what[64];
    if (o->lookup) snprintf(what, sizeof what, "lookup %d", o->lookup);
    else if (o->draft_layers) snprintf(what, sizeof what, "first %d layers", o->draft_layers);
    else snprintf(what, sizeof what, "draft model");
    fprintf(stderr,
            "speculative (%s): drafted %d, accepted %d (%.1f%%), %d verification steps, %.2f tokens/step, "
            "%.1f tok/s | drafting %.3f s, verification %.3f s\n",
            what, st->n_drafted, st->n_accepted, st->n_drafted ? 100.0 * st->n_accepted / st->n_drafted : 0.0,
            st->n_steps, st->n_steps ? (double)st->gen.n_generated / st->n_steps : 0.0,
            st->gen.gen_s > 0 ? st->gen.n_generated / st->gen.gen_s : 0.0, st->draft_s, st->verify_s);
}
