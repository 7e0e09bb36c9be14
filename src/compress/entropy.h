/* entropy.h - slimlm's own lossless coder for weight bytes: block-field splitting + static rANS.
 *
 * Quantized tensors are arrays of fixed-size blocks whose fields have very different
 * statistics (an f16 scale's high byte takes few values, its low byte is nearly uniform, the
 * packed quants have a peaked distribution). A layout describes the block as fields; each
 * field becomes its own stream (a "split" field one stream per byte position, otherwise one
 * stream of all its bytes), bytes past the last whole block a final stream. Every stream is
 * coded on its own: stored, one repeated byte, or order-0 rANS with a static frequency table
 * (14-bit precision, 32-bit state, byte-wise renormalization).
 *
 * Coded format (little-endian):
 *   u16 block_bytes (0: no layout, a single stream) | u8 n_fields | n_fields x {u16 len, u8 split}
 *   streams in order, each: u8 mode
 *     0 stored: the bytes | 1 constant: one byte | 2 rANS: u32 payload bytes, payload
 *   rANS payload: frequency table (256 entries: f < 128 one byte; f >= 128 two bytes
 *   0x80 | f >> 8, f & 0xff; a 0 entry is followed by a count of further zero entries), then
 *   the u32 final encoder state and the renormalization bytes.
 * Decoding validates everything against the bytes present and the expected output size: a
 * malformed input gives SLM_ERR_FORMAT (or, for a consistent-looking but altered stream,
 * wrong bytes that the caller's checksum catches), never an out-of-bounds access. */
#ifndef SLM_ENTROPY_H
#define SLM_ENTROPY_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define SLM_ENT_MAX_FIELDS 16
#define SLM_ENT_MAX_BLOCK 1024  /* largest block_bytes a layout may have */
#define SLM_ENT_MAX_STREAMS 64  /* streams of one layout, the tail stream not counted */

typedef struct {
    uint16_t len;  /* bytes of the field within a block */
    uint8_t split; /* 1: one stream per byte position; 0: one stream for the field */
} slm_ent_field;

typedef struct {
    uint16_t block_bytes; /* 0: no block structure (one stream) */
    uint8_t n_fields;     /* fields tile the block in order */
    slm_ent_field fields[SLM_ENT_MAX_FIELDS];
} slm_ent_layout;

/* The layout used for a tensor of dtype `dtype` whose rows have row_len elements (the
 * group formats have whole groups only when the row length is a multiple of the group). */
slm_ent_layout slm_ent_layout_for(uint32_t dtype, int64_t row_len);

/* Largest coded size of n bytes under any valid layout (coding never expands a stream). */
size_t slm_ent_bound(size_t n);

/* Code n bytes of src into dst (capacity cap >= slm_ent_bound(n)); *out_len = coded bytes. */
slm_status slm_ent_encode(const slm_ent_layout *layout, const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                          size_t *out_len);

/* Decode exactly n bytes from the len coded bytes at src into dst. */
slm_status slm_ent_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t n);

#endif
