/* recipe.h - compression recipes: a text file of steps, one per line, each a command name and
 * that command's own flags (docs/RECIPES.md):
 *
 *     # prune, heal, quantize, pack
 *     prune --method wanda --sparsity 0.5
 *     distill --tokens 65536 --loss kl
 *     awq --bits 4 --group 128
 *     pack --codec auto
 *
 * Parsing validates everything before anything runs: the step name, every flag against the
 * step's table (unknown flags, missing values, numbers out of range, unknown choices and type
 * names), the flags the runner owns (-m, -o, --calib, ...) and the step order (pack last).
 * Errors are one line "FILE:LINE: what". Tokens split at blanks; '...' and "..." quote (in
 * double quotes \" and \\ escape); '#' outside quotes starts a comment.
 *
 * The hash of step k covers the input model's SHA-256 and the canonical text of steps 1..k
 * (so editing a later line keeps the earlier steps' outputs valid for resuming). */
#ifndef SLM_RECIPE_H
#define SLM_RECIPE_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/status.h"

#define SLM_RECIPE_MAX_STEPS 64
#define SLM_RECIPE_MAX_ARGS 128

typedef enum {
    SLM_STEP_PRUNE = 0,
    SLM_STEP_DISTILL,
    SLM_STEP_AWQ,
    SLM_STEP_QUANTIZE,
    SLM_STEP_CLUSTER,
    SLM_STEP_PACK,
    SLM_STEP_COUNT
} slm_step_kind;

typedef struct {
    slm_step_kind kind;
    int line;         /* 1-based line of the recipe text */
    int argc;         /* the line's flags and values, the step name not included */
    char **argv;      /* [argc] malloc'd */
    char *canon;      /* canonical text: name and tokens joined by one blank, quoted when needed */
    bool calib;       /* the step reads calibration statistics (awq; prune wanda / structured;
                       * cluster --weighted) */
    bool calib_rows;  /* ... and needs sampled input rows (awq) */
    bool reshapes;    /* the output has other shapes than the input (distill, structured prune) */
    bool own_student; /* distill choosing its student from the teacher (--keep-layers ...) */
} slm_recipe_step;

typedef struct {
    int n_steps;
    slm_recipe_step steps[SLM_RECIPE_MAX_STEPS];
} slm_recipe;

/* Name of a step kind ("prune", ...). */
const char *slm_step_name(slm_step_kind k);

/* Parse and validate text[0..len) (NUL bytes are an error); name labels the messages. On
 * error *r is left empty. */
slm_status slm_recipe_parse(const char *text, size_t len, const char *name, slm_recipe *r);
/* Read the file at path and parse it. */
slm_status slm_recipe_load(const char *path, slm_recipe *r);
void slm_recipe_free(slm_recipe *r);

/* The value of the last occurrence of flag in step s, or NULL (also for flags without value:
 * then "" when present). */
const char *slm_recipe_flag(const slm_recipe_step *s, const char *flag);

/* Hash (64 hex digits) of steps 0..k (k < n_steps) applied to an input with SHA-256
 * input_sha. */
void slm_recipe_hash(const slm_recipe *r, int k, const char input_sha[65], char out[65]);

/* Calibration key of a step: the flags that determine its calibration statistics (text,
 * windows, window length, seed) as one string, values as written ("" when absent). Steps
 * whose keys are equal may share one calibration file (rows kept: see docs/RECIPES.md). */
void slm_recipe_calib_key(const slm_recipe_step *s, char *buf, size_t cap);

#endif
