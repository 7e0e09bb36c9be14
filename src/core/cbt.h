/* cbt.h - clustered weight formats with one codebook per tensor (ids SLM_DT_CBT_FIRST ..):
 * k = 32, 64, 128 or 256 int8 levels shared by every row of a matrix, a per-row f16 scale,
 * and each weight an index of b = 5, 6, 7 or 8 bits into the shared table.
 *
 * The table is not part of the rows: a file stores it as the companion tensor
 * "<base>.codebook" (dtype I8, one dimension of k entries) next to "<base>.weight"; the model
 * loader binds it to the matrix (slm_mat.tab) and every function below takes it as an
 * argument. Table entries must lie in [-127, 127] (slm_cbt_check_table).
 *
 * A row of n weights (n a multiple of 32) is
 *     f16 s               row scale (little-endian)
 *     packed indices      n / 32 sub-blocks of 32 indices, 4 * b bytes each, back to back
 * and weight j decodes to s * tab[idx_j]. Sub-block layout (e = index in the sub-block):
 *     b = 8: 32 bytes, byte e = idx_e
 *     b < 8: 16 bytes of the low four bits: byte e (e < 16) holds idx_e & 15 in its low nibble
 *            and idx_{e+16} & 15 in its high nibble; then
 *            b = 5: a little-endian u32 whose bit e is bit 4 of idx_e                (20 bytes)
 *            b = 6: 8 bytes, (idx_e >> 4) & 3 in bits 2*(e/8) .. 2*(e/8)+1 of byte e%8 (24 bytes)
 *            b = 7: those 8 bytes of bits 4-5, then a little-endian u32 whose bit e is
 *                   bit 6 of idx_e                                                   (28 bytes)
 * Row bytes = 2 + n * b / 8; bits per weight = b + 16 / n (+ 8 k / (rows * n) for the table).
 * Kernels pair these rows with Q8_0 activations: a sub-block meets one activation block,
 *   dot = s * sum_blocks d_x * sum_e tab[idx_e] * q_x[e]   (exact integer inner sums). */
#ifndef SLM_CBT_H
#define SLM_CBT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

enum {
    SLM_CBT_SUB = 32,     /* indices per packed sub-block; rows are multiples of this */
    SLM_CBT_N_TYPES = 4,  /* cbt32, cbt64, cbt128, cbt256 */
    SLM_CBT_MAX_K = 256,
    SLM_DT_CBT_FIRST = SLM_DT_CB_FIRST + 4, /* inside the codebook id range */
};

#define SLM_DT_CBT32 ((uint32_t)SLM_DT_CBT_FIRST + 0u)
#define SLM_DT_CBT64 ((uint32_t)SLM_DT_CBT_FIRST + 1u)
#define SLM_DT_CBT128 ((uint32_t)SLM_DT_CBT_FIRST + 2u)
#define SLM_DT_CBT256 ((uint32_t)SLM_DT_CBT_FIRST + 3u)

typedef struct {
    int k;    /* table entries: 32, 64, 128, 256 */
    int bits; /* index bits: 5, 6, 7, 8 */
    int sub;  /* bytes per packed sub-block: 4 * bits */
} slm_cbt_format;

/* True if t is a per-tensor codebook format (and fills f when not NULL). */
bool slm_cbt_format_of(uint32_t t, slm_cbt_format *f);
/* Type id for k entries (32, 64, 128, 256), or -1. */
int slm_cbt_type(int k);

/* Traits of type t (name, block size / bytes, row_bytes; to_float, dot_f32 and from_float are
 * NULL because a row cannot be decoded without its table), or NULL if t is not one. */
const slm_dtype_traits *slm_cbt_traits(uint32_t t);

/* Bytes of a row of n weights; false if n is not a positive multiple of 32 or overflows. */
bool slm_cbt_row_bytes(uint32_t t, int64_t n, size_t *out);

/* True if every one of the k entries of tab lies in [-127, 127]. */
bool slm_cbt_check_table(const int8_t *tab, int k);

/* Reference decoding with the table tab[k]: the row as f32, and its dot with f32 x. */
void slm_cbt_to_float(uint32_t t, const int8_t *tab, const void *row, float *dst, int64_t n);
float slm_cbt_dot_f32(uint32_t t, const int8_t *tab, const void *row, const float *x, int64_t n);

/* Index j of a packed row (j < n), and the whole row's indices (idx[n]). */
int slm_cbt_index(uint32_t t, const void *row, int64_t j);
/* Write a row from its scale (rounded to f16) and n indices (each < k). */
void slm_cbt_pack_row(uint32_t t, float scale, const uint8_t *idx, void *row, int64_t n);

/* Encode src[n] with table tab[k] under row scale s (s is rounded to f16 first; s == 0 or
 * non-finite: every index points at the entry of least |value|): each weight gets the index
 * of the nearest s * tab[i] (ties: the lower index). Non-finite inputs count as 0. */
void slm_cbt_encode_row(uint32_t t, const int8_t *tab, float s, const float *src, void *dst, int64_t n);

#endif
