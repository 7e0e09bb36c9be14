/* dtype.h - tensor element types: one traits table, ids equal to GGUF/ggml type ids.
 *
 * Quantized types are arrays of fixed-size blocks; the block structs in dtype.c are the file
 * format (llama.cpp-compatible layouts) and carry static_asserts on their sizes. Every type
 * has a plain scalar to_float (dequantize) and dot_f32 (dot of one row with an f32 vector);
 * faster kernels elsewhere are checked against these. */
#ifndef SLM_DTYPE_H
#define SLM_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SLM_DT_F32 = 0,
    SLM_DT_F16 = 1,
    SLM_DT_Q4_0 = 2,
    SLM_DT_Q4_1 = 3,
    /* 4, 5: retired ids (Q4_2, Q4_3), never reused */
    SLM_DT_Q5_0 = 6,
    SLM_DT_Q5_1 = 7,
    SLM_DT_Q8_0 = 8,
    SLM_DT_Q8_1 = 9,
    SLM_DT_Q2_K = 10,
    SLM_DT_Q3_K = 11,
    SLM_DT_Q4_K = 12,
    SLM_DT_Q5_K = 13,
    SLM_DT_Q6_K = 14,
    SLM_DT_Q8_K = 15,
    SLM_DT_I8 = 24,
    SLM_DT_I16 = 25,
    SLM_DT_I32 = 26,
    SLM_DT_I64 = 27,
    SLM_DT_F64 = 28,
    SLM_DT_BF16 = 30,
    /* slimlm's group-wise formats (core/gq.h): 24 ids from here, outside ggml's range */
    SLM_DT_GQ_FIRST = 192,
    /* sparse formats (core/sparse.h): up to 128 ids from here */
    SLM_DT_SP_FIRST = 216,
    /* codebook (clustered) formats (core/codebook.h): up to 32 ids from here */
    SLM_DT_CB_FIRST = 344,
    SLM_DT_COUNT = 376 /* table size; ids >= this are unknown */
} slm_dtype;

/* Dequantize n elements (n a multiple of block_size) from src into dst. */
typedef void (*slm_to_float_fn)(const void *src, float *dst, int64_t n);
/* Dot product of n elements (n a multiple of block_size) of a row w with f32 vector x. */
typedef float (*slm_dot_f32_fn)(const void *w, const float *x, int64_t n);
/* Quantize n f32 elements (n a multiple of block_size) from src into blocks at dst
 * (reference round-to-nearest quantizer; deterministic). */
typedef void (*slm_from_float_fn)(const float *src, void *dst, int64_t n);

typedef struct {
    const char *name;        /* "q4_1" */
    int64_t block_size;      /* elements per block (1 for plain types) */
    size_t block_bytes;      /* bytes per block */
    slm_to_float_fn to_float; /* NULL: layout known (file can be parsed) but not computable */
    slm_dot_f32_fn dot_f32;  /* NULL when to_float is NULL */
    slm_from_float_fn from_float; /* NULL: no reference quantizer for this type */
    /* Bytes of a row of n elements when a row is not a whole number of equal blocks (the
     * group formats, whose last group may be shorter); NULL: n / block_size * block_bytes. */
    bool (*row_bytes)(uint32_t t, int64_t n, size_t *out);
    /* Formats whose rows carry counts or indices that kernels trust (sparse rows): false if
     * any of the `rows` rows of n elements at data is malformed. Loaders call it once on
     * untrusted data before any kernel reads it. NULL: every byte pattern is valid. */
    bool (*check_rows)(uint32_t t, const void *data, int64_t n, int64_t rows);
} slm_dtype_traits;

/* Traits of type id t, or NULL if the id is unknown. */
const slm_dtype_traits *slm_dtype_get(uint32_t t);

/* Name of type id t ("q4_1"), or "unknown". */
const char *slm_dtype_name(uint32_t t);

/* Type id for a name (case-insensitive), or -1. */
int slm_dtype_from_name(const char *name);

/* Bytes of a row of n elements of type t. False if t is unknown, n is negative or not a
 * multiple of the block size, or the size overflows. */
bool slm_row_bytes(uint32_t t, int64_t n, size_t *out);

/* Half-precision conversions (round to nearest even; NaN and Inf preserved). */
float slm_f16_to_f32(uint16_t h);
uint16_t slm_f32_to_f16(float f);
float slm_bf16_to_f32(uint16_t h);
uint16_t slm_f32_to_bf16(float f);

#endif
