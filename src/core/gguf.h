/* gguf.h - GGUF reader (versions 2 and 3).
 *
 * The file is mmapped (or a caller's buffer borrowed) and never copied: strings, numeric
 * arrays and tensor data point into it. Everything read from the file is validated with
 * overflow-safe arithmetic before use; a malformed file gives SLM_ERR_FORMAT and a one-line
 * message naming what is wrong and the byte offset. */
#ifndef SLM_GGUF_H
#define SLM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define SLM_GGUF_MAX_DIMS 4
#define SLM_GGUF_DEFAULT_ALIGNMENT 32
/* Deepest nesting of arrays inside one value (an array of arrays is 2 levels). */
#define SLM_GGUF_MAX_NESTING 8

typedef enum {
    SLM_GGUF_UINT8 = 0,
    SLM_GGUF_INT8 = 1,
    SLM_GGUF_UINT16 = 2,
    SLM_GGUF_INT16 = 3,
    SLM_GGUF_UINT32 = 4,
    SLM_GGUF_INT32 = 5,
    SLM_GGUF_FLOAT32 = 6,
    SLM_GGUF_BOOL = 7,
    SLM_GGUF_STRING = 8,
    SLM_GGUF_ARRAY = 9,
    SLM_GGUF_UINT64 = 10,
    SLM_GGUF_INT64 = 11,
    SLM_GGUF_FLOAT64 = 12,
    SLM_GGUF_VTYPE_COUNT
} slm_gguf_vtype;

/* A string inside the file: not NUL-terminated. */
typedef struct {
    uint64_t len;
    const char *ptr;
} slm_gguf_str;

typedef struct slm_gguf_value {
    uint32_t type; /* slm_gguf_vtype */
    union {
        uint64_t u64; /* UINT8..UINT64 */
        int64_t i64;  /* INT8..INT64 (sign-extended) */
        double f64;   /* FLOAT32, FLOAT64 */
        bool b;       /* BOOL */
        slm_gguf_str str;
        struct {
            uint32_t type;  /* element type */
            uint64_t n;     /* element count */
            const uint8_t *raw;            /* numeric/bool elements: packed little-endian in the file */
            struct slm_gguf_value *items;  /* STRING or ARRAY elements: n parsed values; else NULL */
        } arr;
    };
} slm_gguf_value;

typedef struct {
    slm_gguf_str key;
    slm_gguf_value value;
} slm_gguf_kv;

typedef struct {
    slm_gguf_str name;
    uint32_t n_dims;
    int64_t ne[SLM_GGUF_MAX_DIMS]; /* ne[0] is the innermost (row length); unused dims are 1 */
    uint32_t type;                 /* slm_dtype id */
    uint64_t offset;               /* relative to the data section */
    const void *data;              /* points into the file */
    size_t nbytes;
} slm_gguf_tensor;

typedef struct slm_gguf {
    uint32_t version;
    uint64_t n_kv;
    slm_gguf_kv *kv;
    uint64_t n_tensors;
    slm_gguf_tensor *tensors;
    size_t alignment;
    size_t data_offset; /* file offset of the tensor data section */
    const uint8_t *buf; /* whole file */
    size_t size;
    void *map;          /* non-NULL when opened from a path (munmap on free) */
    void (*release)(void *buf, size_t size); /* owner of buf when opened from memory */
} slm_gguf;

/* mmap a file and parse it. On error *out is NULL. */
slm_status slm_gguf_open(const char *path, slm_gguf **out);
/* Parse a buffer the caller keeps alive for the lifetime of the result. */
slm_status slm_gguf_parse(const void *buf, size_t size, slm_gguf **out);
/* Parse a buffer and take ownership of it: slm_gguf_free (or a failed parse) calls
 * release(buf, size). */
slm_status slm_gguf_open_memory(void *buf, size_t size, void (*release)(void *buf, size_t size), slm_gguf **out);
void slm_gguf_free(slm_gguf *g); /* NULL is a no-op */

const slm_gguf_value *slm_gguf_find(const slm_gguf *g, const char *key);
const slm_gguf_tensor *slm_gguf_find_tensor(const slm_gguf *g, const char *name);

/* Typed getters. SLM_ERR_NOT_FOUND if the key is absent, SLM_ERR_FORMAT (with a message
 * naming the key) if the type does not fit. Integer getters accept any integer type whose
 * value is in range; the float getter accepts floats and integers. */
slm_status slm_gguf_get_u32(const slm_gguf *g, const char *key, uint32_t *out);
slm_status slm_gguf_get_f32(const slm_gguf *g, const char *key, float *out);
slm_status slm_gguf_get_bool(const slm_gguf *g, const char *key, bool *out);
slm_status slm_gguf_get_str(const slm_gguf *g, const char *key, slm_gguf_str *out);
/* Array of element type `type`: *out points at the value. */
slm_status slm_gguf_get_arr(const slm_gguf *g, const char *key, uint32_t type, const slm_gguf_value **out);

const char *slm_gguf_vtype_name(uint32_t t);
/* Bytes of one value of a fixed-size type; 0 for STRING, ARRAY and unknown types. */
size_t slm_gguf_scalar_bytes(uint32_t t);
/* Compare a file string with a C string. */
bool slm_gguf_str_eq(slm_gguf_str s, const char *c);
/* Copy into a NUL-terminated buffer (truncates); returns dst. */
char *slm_gguf_str_copy(slm_gguf_str s, char *dst, size_t cap);

#endif
