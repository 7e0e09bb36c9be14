/* report.h - one quality/size row per model, several models side by side (`slimlm eval`).
 *
 * Size: the file's bytes on disk, and bits per weight over all tensors (8 * tensor bytes /
 * elements) and over the 2-D tensors only (the weight matrices, where quantization acts).
 * Quality: perplexity on a text and, against a base model's saved top-k file, KL(base||model)
 * mean and p99, top-1 agreement and the perplexity ratio (see perplexity.h).
 *
 * The base file is keyed by what determines its contents: the base model's bytes, the text's
 * bytes, the window size, the window count, top-k and the KV element type. */
#ifndef SLM_REPORT_H
#define SLM_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"
#include "../core/strbuf.h"
#include "../model/model.h"

typedef struct {
    const char *name;       /* shown in the table (not owned) */
    const char *path;       /* model file (not owned) */
    bool is_base;           /* the row of the base model (KL columns not measured) */
    uint64_t file_bytes;    /* size on disk */
    uint64_t n_params, n_bytes;     /* all tensors */
    uint64_t mat_params, mat_bytes; /* 2-D tensors */
    double bpw, mat_bpw;
    bool has_ppl;
    double ppl, ppl_stderr; /* ppl_stderr: ppl x stderr of the mean nll; < 0: unknown */
    long n_scored;
    bool has_kl;
    double kl_mean, kl_p99, kl_max, top1, ppl_ratio;
    bool has_tg;
    double tg;              /* median tokens/s */
    bool has_pp;
    double pp;              /* prompt processing, median tokens/s */
    bool has_mem;
    uint64_t peak_rss;      /* bytes: the process's peak resident size while this model was
                             * loaded and evaluated (the peak is reset before loading it) */
    uint64_t peak_delta;    /* bytes: peak_rss minus the resident size before loading */
} slm_report_row;

/* Fill the size fields of r from the file at path (its size) and the loaded model m. */
slm_status slm_report_size(const slm_model *m, const char *path, slm_report_row *r);

/* Key of a base file: SHA-256 (hex) over the two content digests and the settings. */
void slm_report_base_key(const char model_sha[65], const char text_sha[65], int n_ctx, int n_chunks, int top_k,
                         const char *kv_type, char key[65]);

/* Directory of cached base files: ${SLIMLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slimlm}/klbase.
 * Returns buf. */
char *slm_report_cache_dir(char *buf, size_t cap);

/* The side-by-side table; tg_tokens / pp_tokens > 0 add the tg / pp columns, and then a peak
 * memory column when any row has it (the JSON and CSV always carry it). */
void slm_report_table(FILE *f, const slm_report_row *rows, int n, bool with_kl, int tg_tokens, int pp_tokens);

/* The rows as CSV (a header line, then one line per row; empty cells for unmeasured values). */
void slm_report_csv(slm_sb *b, const slm_report_row *rows, int n);

/* Peak memory of this process, per model: slm_mem_reset_peak sets the kernel's high-water mark
 * (VmHWM) to the current resident size (writes 5 to /proc/self/clear_refs; false where that is
 * not possible); slm_mem_read reads VmRSS and VmHWM in bytes (false if unavailable). */
bool slm_mem_reset_peak(void);
bool slm_mem_read(uint64_t *rss, uint64_t *hwm);

/* Append the rows as a JSON array. */
void slm_report_json_rows(slm_sb *b, const slm_report_row *rows, int n);

#endif
