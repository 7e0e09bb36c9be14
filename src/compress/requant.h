/* requant.h - rewrite the tensors of a GGUF model: each chosen tensor is dequantized row by
 * row, optionally changed by a fold hook (scales of AWQ, ...), and quantized to its target
 * type; the others are copied. The commands that write models (quantize, awq) plan the
 * targets and leave the work and the bookkeeping of errors and sizes to this module. */
#ifndef SLM_REQUANT_H
#define SLM_REQUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/gguf.h"
#include "../core/gguf_write.h"
#include "../core/status.h"
#include "../core/threadpool.h"
#include "../kernels/matmul.h"

/* A companion tensor written right after the tensor it belongs to (a per-tensor codebook, an
 * outlier table): one dimension, size fixed when planned, bytes filled by the hooks while the
 * tensor is converted (allocated zeroed by the conversion, owned by the plan). */
typedef struct {
    char name[160];
    uint32_t type;
    int64_t ne0;
    size_t bytes;
    void *data;
} slm_rq_extra;

enum { SLM_RQ_MAX_EXTRA = 4 };

typedef struct {
    char name[128];
    uint32_t in_type, out_type;
    bool convert;       /* rewritten (else copied as is) */
    const char *note;   /* why it was not converted as asked, or NULL */
    int64_t n, rows, cols;
    size_t in_bytes, out_bytes;
    double err2, ref2;  /* sum of squared quantization errors and of squared (folded) weights */
    int gq;             /* >= 0: quantized by the group quantizer of this layout (clip search) */
    const void *src;
    void *dst;          /* owned when convert */
    slm_rq_extra extra[SLM_RQ_MAX_EXTRA]; /* companions (converted tensors only) */
    int n_extra;
    /* a matrix with a codebook table or outliers of its own: read through them (rows decoded
     * as the engine computes them); its companion tensors are dropped when it is converted */
    bool has_in_mat;
    slm_mat in_mat;
    bool drop;          /* a companion of a converted matrix: not written */
} slm_rq_tensor;

typedef struct {
    void *user;
    /* true if the tensor must be rewritten with fold_row applied to every row */
    bool (*affects)(void *user, const char *name);
    void (*fold_row)(void *user, const char *name, int64_t row, float *x, int64_t n);
    /* per-column error weights for the clipping search of this tensor (buf has n floats; may
     * return buf, another array, or NULL for none) */
    const float *(*importance)(void *user, const char *name, float *buf, int64_t n);
    /* a quantizer of the tensor's own (clustering, ...): stores row `row` (x, after fold_row;
     * it may clean x in place) at dst and returns true, or returns false to leave the row to
     * the default quantizer. imp: the importance hook's weights, or NULL. */
    bool (*quantize_row)(void *user, const slm_rq_tensor *p, int64_t row, float *x, const float *imp, void *dst);
    /* before the rows of a converted tensor (its dst and extras allocated, imp as above): work
     * over the whole tensor (a shared codebook, the choice of outliers); an error stops the
     * conversion */
    slm_status (*begin_tensor)(void *user, slm_rq_tensor *p, const float *imp);
    /* the weights row `row` (stored at q) stands for, when the output dtype alone cannot say
     * (its table or outliers are elsewhere): writes y[cols] and returns true; false: the
     * dtype's to_float */
    bool (*decode_row)(void *user, const slm_rq_tensor *p, int64_t row, const void *q, float *y);
    /* after the rows (also after a failure): release what begin_tensor kept */
    void (*end_tensor)(void *user, slm_rq_tensor *p);
} slm_rq_hooks;

typedef struct {
    bool clip_search;           /* group search for the types that have a group layout */
    const slm_rq_hooks *hooks;  /* NULL: none */
    int progress;               /* 0 none, 1 a bar on a terminal, 2 a line per tensor */
    const char *label;          /* progress prefix ("quantize") */
    bool hook_types;            /* plan: targets without a reference quantizer are allowed (a
                                   quantize_row hook writes every row of them) */
} slm_rq_opts;

/* Plan: want[i] is the target type of tensor i, or -1 to copy it. A tensor that cannot be
 * converted (input not dequantizable, row length not a multiple of the target's block) keeps
 * its type with a note; one the fold hook affects is always rewritten (at its own type, or
 * f32 / f16 when that type has no quantizer). *out is [g->n_tensors]. */
slm_status slm_rq_plan(const slm_gguf *g, const int *want, const slm_rq_opts *o, slm_rq_tensor **out);

/* The 2-D weight matrices the model-writing commands quantize by default: token_embd,
 * output and blk.N.attn_* / blk.N.ffn_* weights. */
bool slm_rq_is_weight_matrix(const slm_gguf_tensor *t, const char *name);

/* general.file_type for a model whose main weight type is dtype (llama.cpp's values; 1024,
 * "guessed from the tensors", for types llama.cpp does not have). */
uint32_t slm_rq_file_type(uint32_t dtype);

/* The types whose bytes a group layout produces (q4_0, q4_1, q8_0, the group formats), or -1. */
int slm_rq_gq_layout(uint32_t t);

/* Convert every planned tensor (threads split the rows). */
slm_status slm_rq_convert(slm_pool *pool, const slm_gguf *g, slm_rq_tensor *ts, const slm_rq_opts *o);

/* Convert and write in one pass, one tensor in memory at a time: every tensor (converted or
 * copied, in the input's order) is added to w as a producer, then w is written to path. Each
 * planned tensor is converted when the writer reaches it (threads split the rows), its bytes
 * freed right after they are written, and the input's pages of that tensor dropped. The
 * output is the same file as slm_rq_convert + slm_rq_add_tensors + slm_gguf_writer_write
 * give; after it, ts holds sizes and error sums (for slm_rq_print_summary) but no data (dst
 * NULL). Peak memory: one converted tensor plus the pages of the one being read. */
slm_status slm_rq_convert_write(slm_pool *pool, const slm_gguf *g, slm_rq_tensor *ts, const slm_rq_opts *o,
                                slm_gguf_writer *w, const char *path);

/* Drop the resident pages of [p, p + n) when it lies in g's file mapping (no-op for a model
 * parsed from memory): they are read from the file again if touched later. */
void slm_rq_drop_pages(const slm_gguf *g, const void *p, size_t n);
/* The same for the whole mapping. */
void slm_rq_drop_all(const slm_gguf *g);
/* SHA-256 (hex) of g's whole file, read in chunks whose pages are dropped after hashing. */
void slm_rq_sha256(const slm_gguf *g, char out[65]);

/* Give tensor p the companion `name` of n elements of dtype type (p must be converted). */
slm_status slm_rq_add_extra(slm_rq_tensor *p, const char *name, uint32_t type, int64_t n);

/* Add every tensor (converted or copied) to w, in the input's order, each followed by its
 * companions. */
slm_status slm_rq_add_tensors(slm_gguf_writer *w, const slm_gguf *g, const slm_rq_tensor *ts);

/* The per-tensor table (tensor, dtype in -> out, bytes, relative RMS error, notes; with
 * per_tensor false only the noted tensors) and the totals: sizes, bits per weight, and the
 * error over the converted tensors. */
void slm_rq_print_summary(FILE *f, const slm_rq_tensor *ts, size_t n, bool per_tensor, const char *type_name);

void slm_rq_free(slm_rq_tensor *ts, size_t n); /* NULL is a no-op */

#endif
