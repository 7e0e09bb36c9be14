/* codebook.h - clustered weight formats (ids SLM_DT_CB_FIRST ..): every row carries its own
 * small codebook of k int8 levels under one f16 scale, and each weight is an index into it.
 *
 * A row of n weights (n a multiple of 32) of format cb<k> (k = 4, 8, 16; b = 2, 3, 4 index
 * bits) is
 *     f16 s               row scale (little-endian)
 *     int8 q[k]           codebook entries; entry i decodes to c_i = s * q_i, q_i in [-127, 127]
 *     packed indices      n / 32 sub-blocks of 32 indices, 4 * b bytes each, back to back
 * and weight j decodes to s * q[idx_j]. Sub-block packing (e = index in the sub-block, as the
 * group formats of gq.h):
 *     4 bits: 16 bytes, idx_e in the low nibble of byte e, idx_{e+16} in the high nibble (e < 16)
 *     2 bits:  8 bytes, idx_e in bits 2*(e/8) .. 2*(e/8)+1 of byte e%8
 *     3 bits: the 2-bit plane of the low two bits (8 bytes), then a 4-byte little-endian word
 *             whose bit e is bit 2 of idx_e
 * Row bytes = 2 + k + n * b / 8; bits per weight = b + (16 + 8k) / n (cb16 on rows of 576:
 * 4.25). Kernels pair these rows with Q8_0 activations: a sub-block meets one activation block.
 *
 * Quantizing a row: 1-D k-means on its values (optionally weighted per column), then the
 * centroids are rounded to the int8 grid of s = max|c| / 127 (s stored as f16) and every weight
 * is re-assigned to the nearest rounded level. */
#ifndef SLM_CODEBOOK_H
#define SLM_CODEBOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

enum {
    SLM_CB_SUB = 32,    /* indices per packed sub-block; rows are multiples of this */
    SLM_CB_N_TYPES = 3, /* cb4, cb8, cb16 */
    SLM_CB_MAX_K = 16,
};

/* Type ids. */
#define SLM_DT_CB4 ((uint32_t)SLM_DT_CB_FIRST + 0u)
#define SLM_DT_CB8 ((uint32_t)SLM_DT_CB_FIRST + 1u)
#define SLM_DT_CB16 ((uint32_t)SLM_DT_CB_FIRST + 2u)

typedef struct {
    int k;    /* codebook entries: 4, 8, 16 */
    int bits; /* index bits: 2, 3, 4 */
    int sub;  /* bytes per packed sub-block: 4 * bits */
    int hdr;  /* bytes before the indices: 2 + k */
} slm_cb_format;

/* True if t is a codebook format (and fills f when not NULL). */
bool slm_cb_format_of(uint32_t t, slm_cb_format *f);
/* Type id for k entries (4, 8, 16), or -1. */
int slm_cb_type(int k);

/* Traits of codebook dtype t, or NULL if t is not one. */
const slm_dtype_traits *slm_cb_traits(uint32_t t);
/* Activation dtype the kernels of codebook dtype t take (SLM_DT_Q8_0), or -1. */
int slm_cb_act_type(uint32_t t);

/* Bytes of a row of n weights; false if n is not a positive multiple of 32 or overflows. */
bool slm_cb_row_bytes(uint32_t t, int64_t n, size_t *out);

/* Quantize one row of n weights: weighted 1-D k-means (weights w[n] >= 0 per column, NULL:
 * all ones; deterministic: centroids start at weighted quantiles), then the int8 grid. With
 * w NULL this is the dtype table's from_float. Non-finite inputs count as 0. False only when
 * scratch memory cannot be had (dst is then a row of zeros). */
bool slm_cb_quantize_row(uint32_t t, const float *src, const float *w, void *dst, int64_t n);

/* Encode a row with given centroids c[nc] (nc <= k; any order, non-finite ones ignored): round
 * to the int8 grid of max|c| / 127, assign each weight to the nearest level. */
void slm_cb_encode_row(uint32_t t, const float *src, const float *c, int nc, void *dst, int64_t n);

/* sum_j w_j * (src_j - decoded_j)^2 of a quantized row (w NULL: all ones). */
double slm_cb_row_error(uint32_t t, const float *src, const float *w, const void *q, int64_t n);

/* Index j of a packed row (for tests and tools; j < n). */
int slm_cb_index(uint32_t t, const void *row, int64_t j);

#endif
