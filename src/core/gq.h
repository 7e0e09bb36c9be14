/* gq.h - slimlm's group-wise integer weight formats: 8, 4, 3 and 2 bits, groups of 32, 64 or
 * 128 weights along a row, symmetric or asymmetric scales, packed densely.
 *
 * A row of n weights (n a multiple of 32) is cut into groups of G weights; when G does not
 * divide n, the last group of the row is shorter (n mod G, a multiple of 32). A group is
 *     f16 d            scale
 *     f16 m            offset (asymmetric formats only)
 *     packed quants    in sub-blocks of 32 weights, back to back
 * and weight j of the group is
 *     bits 2, 3, 4:  x = d * u + m     u unsigned in [0, 2^bits); symmetric: m = -2^(bits-1) * d
 *     bits 8:        x = d * s + m     s signed in [-128, 127];   symmetric: m = 0
 * Sub-block packing (32 weights, e = index in the sub-block):
 *     8 bits: 32 bytes, s_e in byte e (two's complement)
 *     4 bits: 16 bytes, u_e in the low nibble of byte e, u_{e+16} in the high nibble (e < 16)
 *     2 bits:  8 bytes, u_e in bits 2*(e/8) .. 2*(e/8)+1 of byte e%8
 *     3 bits: the 2-bit plane of the low two bits (8 bytes) followed by a 4-byte little-endian
 *             word whose bit e is bit 2 of u_e: 12 bytes, exactly 3 bits per weight
 * Bits per weight = bits + 16 * (1 + asym) / G, e.g. q4g128 4.125, q3g128 3.125, q2g64a 2.5.
 *
 * Type ids are outside the range GGUF/ggml uses (SLM_DT_GQ_FIRST..); names are "q<bits>g<G>"
 * for symmetric and "q<bits>g<G>a" for asymmetric formats (q4g128, q3g64a). Files holding them
 * are read by slimlm only. */
#ifndef SLM_GQ_H
#define SLM_GQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

enum {
    SLM_GQ_SUB = 32,     /* weights per packed sub-block; rows are multiples of this */
    SLM_GQ_N_BITS = 4,   /* 2, 3, 4, 8 */
    SLM_GQ_N_GROUPS = 3, /* 32, 64, 128 */
    SLM_GQ_N_TYPES = SLM_GQ_N_BITS * SLM_GQ_N_GROUPS * 2,
};

typedef struct {
    int bits;   /* 2, 3, 4 or 8 */
    int group;  /* 32, 64 or 128 */
    bool asym;  /* stores an offset m per group */
    int hdr;    /* header bytes per group: 2 or 4 */
    int sub;    /* bytes per 32-weight sub-block: bits * 4 */
} slm_gq_format;

/* True if t is a group format (and fills f when not NULL). */
bool slm_gq_format_of(uint32_t t, slm_gq_format *f);

/* Type id of a format, or -1 for an unsupported combination. */
int slm_gq_type(int bits, int group, bool asym);

/* Traits entry of a group format (used by the dtype table), NULL for other ids. */
const slm_dtype_traits *slm_gq_traits(uint32_t t);

/* Bytes of a row of n weights; false if n is not a positive multiple of 32 or overflows. */
bool slm_gq_row_bytes(uint32_t t, int64_t n, size_t *out);

/* Quantizer options. */
typedef struct {
    /* Search each group's clipping range: candidate ranges shrunk from the full min/max by
     * factors 1, 1 - 1/40, ... down to min_shrink, plus a least-squares refit of the scale
     * (and offset) for the chosen quants; the candidate with the least (weighted) squared
     * error wins. Off: plain round to nearest over the full range. */
    bool clip_search;
    float min_shrink;         /* smallest range factor tried (0 means 0.5) */
    const float *importance;  /* per-weight error weights for the search (n values), or NULL */
} slm_gq_opts;

/* Quantize one row of n weights (a multiple of 32) into dst (slm_gq_row_bytes bytes). Without
 * opts (or with clip_search false) this is the round-to-nearest reference quantizer, which is
 * also the dtype table's from_float. Non-finite input gives unspecified quants, never
 * undefined behaviour. */
void slm_gq_quantize_row(uint32_t t, const float *src, void *dst, int64_t n, const slm_gq_opts *opts);

/* Squared error sum_j imp_j * (x_j - dequant_j)^2 of one quantized row against src (imp NULL:
 * all ones). */
double slm_gq_row_error(uint32_t t, const float *src, const void *q, int64_t n, const float *imp);

#endif
