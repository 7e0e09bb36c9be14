/* common.h - helpers shared by the subcommands: flag parsing, model loading, messages. */
#ifndef SLM_CLI_COMMON_H
#define SLM_CLI_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"

/* Print "slimlm <cmd>: error: <msg>" on one line; returns 1 (the exit code). */
int cli_fail(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Same, with the library's last error message. */
int cli_fail_status(const char *cmd, slm_status s);

/* Argument iteration: returns the value for a flag that takes one, or NULL after printing an
 * error when it is missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);
bool cli_int(const char *cmd, const char *flag, const char *v, long lo, long hi, long *out);
bool cli_float(const char *cmd, const char *flag, const char *v, double lo, double hi, double *out);

/* Sampling flags (--temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n,
 * -s/--seed). Returns 1 if argv[*i] was one (consumed), 0 if not, -1 on a bad value. */
int cli_sampling_flag(const char *cmd, int argc, char **argv, int *i, slm_sampler_params *p);
extern const char *const cli_sampling_help;

/* Engine flags shared by the commands that run the model: -m, -t, --kv-type, --isa. */
typedef struct {
    const char *model;    /* NULL: the default model */
    slm_ctx_params ctx;   /* n_ctx, n_threads, kv_type, isa */
} cli_engine_opts;
/* Returns 1 if argv[*i] was an engine flag (consumed), 0 if not, -1 on a bad value. */
int cli_engine_flag(const char *cmd, int argc, char **argv, int *i, cli_engine_opts *o);
extern const char *const cli_engine_help;

/* Loaded model, tokenizer and context. */
typedef struct {
    slm_model *model;
    slm_tokenizer *tok;
    slm_ctx *ctx;
} cli_engine;
/* Loads and reports errors itself (returns false after printing). */
bool cli_engine_load(const char *cmd, const cli_engine_opts *o, bool need_tokenizer, cli_engine *e);
void cli_engine_free(cli_engine *e);

/* Parse "1,2,3" into a malloc'd id array. */
bool cli_parse_ids(const char *cmd, const char *s, int32_t **ids, int *n);

/* An output model file path is usable: not the input file (same name or inode), not a
 * directory, in an existing writable directory. Prints the error itself. */
bool cli_check_output(const char *cmd, const char *in, const char *out);

/* Read a whole file (for -f); malloc'd, NUL-terminated. */
char *cli_read_file(const char *cmd, const char *path, size_t *len);

#endif
