/* spec_flags.h - the speculative decoding flags shared by run, chat and bench:
 * --draft MODEL, --draft-layers K, --lookup N, --draft-max G, --draft-min-p P, and setting up
 * the drafter. */
#ifndef SLM_CLI_SPEC_FLAGS_H
#define SLM_CLI_SPEC_FLAGS_H

#include <stdbool.h>

#include "common.h"
#include "model/speculative.h"

#define CLI_DRAFT_MAX_MODEL 4   /* default --draft-max with a draft model */
#define CLI_DRAFT_MAX_LOOKUP 4  /* default --draft-max with --lookup */
#define CLI_DRAFT_MIN_P 0.4     /* default --draft-min-p */

typedef struct {
    const char *draft;  /* --draft path, NULL: none */
    int draft_layers;   /* --draft-layers K: the target's first K layers + head draft, 0: off */
    int lookup;         /* --lookup n-gram size, 0: off */
    int draft_max;      /* 0: the default for the drafter */
    double min_p;       /* < 0: the default */
} cli_spec_opts;

void cli_spec_defaults(cli_spec_opts *o);
/* Returns 1 if argv[*i] was one of the flags (consumed), 0 if not, -1 on a bad value. */
int cli_spec_flag(const char *cmd, int argc, char **argv, int *i, cli_spec_opts *o);
extern const char *const cli_spec_help;
/* Whether speculative decoding was asked for; checks flag combinations (prints the error
 * and sets *bad). */
bool cli_spec_enabled(const char *cmd, const cli_spec_opts *o, bool *bad);

/* A drafter and what it owns. */
typedef struct {
    slm_model *model;   /* the draft model, NULL for lookup */
    slm_tokenizer *tok;
    slm_drafter *d;
    slm_spec_params sp;
} cli_spec;

/* Load the draft model (checking its vocabulary against the target) or set up lookup;
 * prints its own error. ctx params: those of the target context. */
bool cli_spec_load(const char *cmd, const cli_spec_opts *o, const cli_engine *target, const slm_sampler_params *sp,
                   cli_spec *out);
void cli_spec_free(cli_spec *s);

/* The statistics line to stderr: "speculative (lookup 3): drafted ..., accepted ...". */
void cli_spec_print_stats(const cli_spec_opts *o, const slm_spec_stats *st);

#endif
