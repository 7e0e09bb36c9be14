/* sparse.h - slimlm's sparse weight formats (ids SLM_DT_SP_FIRST ..): descriptors, layouts,
 * traits. All take Q8_0 activation blocks (32 values); rows are multiples of 32 (2:4) or of
 * 64 (unstructured) weights. Multi-byte fields are little-endian.
 *
 * 2:4 semi-structured ("s24q8" = SP_FIRST + 0, "s24q4" = SP_FIRST + 1). A row is a sequence of
 * blocks of 32 weights = 8 groups of 4; every group keeps exactly 2 of its 4 weights:
 *     f16  d        scale
 *     u8   meta[4]  group g in byte g / 2, low nibble for even g, high nibble for odd g; in
 *                   the nibble, bits 0..1 = position (0..3) of the group's first kept weight,
 *                   bits 2..3 = position of the second, first < second
 *     kept values   16 in row order (group g: kept values 2g and 2g + 1)
 *                   s24q8: 16 x i8 q,           weight = d * q            (22 bytes / block)
 *                   s24q4: 8 bytes of nibbles,  weight = d * (u - 8)      (14 bytes / block)
 *                          kept value k < 8 in the low nibble of byte k, k >= 8 in the high
 *                          nibble of byte k - 8
 * Pruned weights are 0.
 *
 * Unstructured ("q8s1" .. "q8s63" = SP_FIRST + 1 + c, "q4s1" .. "q4s63" = SP_FIRST + 64 + c;
 * density class c / 64). A row of n weights (a multiple of 64) stores exactly C = c * n / 64
 * values:
 *     n / 32 block headers { f16 d; u32 mask }   6 bytes each, packed; bit i of mask set =
 *                                                weight i of the block is stored
 *     q8sC: C x i8 q                             the stored values in row order
 *     q4sC: (C + 1) / 2 bytes                    stored value k in the low nibble of byte k / 2
 *                                                for even k, the high nibble for odd k (the
 *                                                high nibble of a last odd one is 0)
 * weight = d * q (q8sC) or d * (u - 8) (q4sC) when stored, else 0. The masks of a row have
 * exactly C bits set in total (check_rows rejects anything else); row bytes = n / 64 * (12 + c)
 * for q8sC, 6 n / 32 + (C + 1) / 2 for q4sC.
 *
 * Quantizers: 2:4 keeps the 2 weights of largest |w| per group (ties: lower position);
 * unstructured keeps the nonzero weights, the C largest |w| when there are more (ties: lower
 * index), and marks zero weights (lowest index first) as stored until there are exactly C.
 * The values then follow q8_0's rule (d = max|w| / 127, q = round(w / d)) or q4_0's (d = the
 * weight of largest magnitude / -8, u = clamp(round(w / d) + 8, 0, 15)) applied to the pruned
 * 32-weight block, so a row that is already pruned quantizes to exactly the values and scale
 * that q8_0 / q4_0 give the dense row. */
#ifndef SLM_SPARSE_H
#define SLM_SPARSE_H

#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"

typedef enum {
    SLM_SP_24 = 0,           /* 2:4 semi-structured */
    SLM_SP_UNSTRUCTURED = 1, /* bitmap per 32 weights, per-row capacity */
} slm_sp_kind;

enum {
    SLM_SP_N_CLASSES = 63, /* unstructured density classes 1..63 (c / 64) */
    SLM_SP_24_Q8 = SLM_DT_SP_FIRST + 0,
    SLM_SP_24_Q4 = SLM_DT_SP_FIRST + 1,
    SLM_SP_Q8S_FIRST = SLM_DT_SP_FIRST + 2,  /* q8s1; q8sC = SLM_SP_Q8S_FIRST + C - 1 */
    SLM_SP_Q4S_FIRST = SLM_DT_SP_FIRST + 65, /* q4s1; q4sC = SLM_SP_Q4S_FIRST + C - 1 */
    SLM_SP_24_BLOCK_Q8 = 22,                /* bytes per 32 weights */
    SLM_SP_24_BLOCK_Q4 = 14,
    SLM_SP_HDR = 6, /* unstructured: bytes of a block header {f16 d; u32 mask} */
};

/* X-macro over the unstructured density classes 1..63 (M(c) for each), for tables of
 * per-class functions. */
#define SLM_SP_CLASSES(M)                                                                                 \
    M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15) M(16) M(17) M(18)   \
    M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31) M(32) M(33) M(34)      \
    M(35) M(36) M(37) M(38) M(39) M(40) M(41) M(42) M(43) M(44) M(45) M(46) M(47) M(48) M(49) M(50)      \
    M(51) M(52) M(53) M(54) M(55) M(56) M(57) M(58) M(59) M(60) M(61) M(62) M(63)

typedef struct {
    slm_sp_kind kind;
    int bits; /* bits per stored value: 8 or 4 */
    int cls;  /* unstructured: density class c (capacity c * n / 64 per row); 2:4: 32 */
} slm_sp_format;

/* True if t is a sparse format this build implements (fills out when not NULL). */
bool slm_sp_format_of(uint32_t t, slm_sp_format *out);

/* Values stored per row of n weights: n / 2 for 2:4, c * n / 64 for unstructured. */
int64_t slm_sp_capacity(const slm_sp_format *f, int64_t n);

/* The smallest unstructured class with values of `bits` bits (8 or 4) whose capacity for rows
 * of n weights holds max_row_nnz values, or -1 (no such class, bits unsupported, n not a
 * positive multiple of 64). */
int slm_sp_unstructured_type(int bits, int64_t n, int64_t max_row_nnz);

/* The 2:4 type with values of `bits` bits (8 or 4), or -1. */
int slm_sp_24_type(int bits);

/* Traits of sparse dtype t, or NULL if t is not one. */
const slm_dtype_traits *slm_sp_traits(uint32_t t);
/* Activation dtype the kernels of sparse dtype t take (SLM_DT_Q8_0), or -1. */
int slm_sp_act_type(uint32_t t);

#endif
