/* gguf.c - GGUF reader (versions 2 and 3, little-endian).
 *
 * File layout (all integers little-endian):
 *   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x { string key | u32 value type | value }
 *   n_tensors x { string name | u32 n_dims | n_dims x u64 ne | u32 dtype | u64 offset }
 *   padding to the alignment | tensor data (each tensor at data_offset + offset)
 * A string is u64 length + bytes (not NUL-terminated); an array is u32 element type +
 * u64 count + elements.
 *
 * Parsing runs in two passes over the same code. The first pass validates the whole header
 * and counts the values that array elements need (strings and nested arrays), allocating
 * nothing; the second pass fills one allocation sized from those counts. Every read checks
 * the bytes remaining first, and every count is bounded by the bytes that remain before it
 * is used, so memory is proportional to the header bytes actually present.
 *
 * Decisions on corner cases:
 *   - a BOOL (scalar or array element) must be 0 or 1; other bytes are rejected;
 *   - keys and tensor names must be non-empty; their bytes are not checked for UTF-8;
 *   - general.alignment must be a UINT32 power of two (default 32);
 *   - arrays nest at most SLM_GGUF_MAX_NESTING levels deep;
 *   - a tensor may have zero elements (a dim of 0); tensors of non-zero size must not overlap;
 *   - a file without tensors may end before the aligned end of its header. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define HEADER_BYTES 24        /* magic + version + n_tensors + n_kv */
/* Smallest possible encodings, used to bound counts before anything is allocated. */
#define MIN_KV_BYTES 14     /* key length 8 + 1 key byte + type 4 + 1 value byte */
#define MIN_TENSOR_BYTES 33 /* name length 8 + 1 name byte + n_dims 4 + 1 dim 8 + type 4 + offset 8 */

typedef unsigned long long ull;

/* ---- byte reader --------------------------------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t size;
    size_t pos;
} reader;

static size_t remaining(const reader *r) { return r->size - r->pos; }

static uint64_t load_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Checks that n bytes remain; `what` names the field for the message. */
static slm_status need(const reader *r, size_t n, const char *what) {
    if (n > remaining(r))
        return slm_error(SLM_ERR_FORMAT, "%s (%zu bytes) at offset %zu extends past end of file (%zu bytes)",
                         what, n, r->pos, r->size);
    return SLM_OK;
}

static slm_status read_uint(reader *r, int n, const char *what, uint64_t *out) {
    slm_status s = need(r, (size_t)n, what);
    if (s) return s;
    *out = load_le(r->buf + r->pos, n);
    r->pos += (size_t)n;
    return SLM_OK;
}

static slm_status read_u32(reader *r, const char *what, uint32_t *out) {
    uint64_t v;
    slm_status s = read_uint(r, 4, what, &v);
    if (!s) *out = (uint32_t)v;
    return s;
}

static slm_status read_u64(reader *r, const char *what, uint64_t *out) { return read_uint(r, 8, what, out); }

static slm_status read_str(reader *r, const char *what, slm_gguf_str *out) {
    size_t at = r->pos;
    uint64_t len;
    slm_status s = read_u64(r, what, &len);
    if (s) return s;
    if (len > remaining(r))
        return slm_error(SLM_ERR_FORMAT, "%s length %llu exceeds remaining %zu bytes at offset %zu", what,
                         (ull)len, remaining(r), at);
    out->len = len;
    out->ptr = (const char *)(r->buf + r->pos);
    r->pos += (size_t)len;
    return SLM_OK;
}

/* A file string made safe for a message: printable ASCII, truncated to fit cap with "...". */
static const char *printable(slm_gguf_str s, char *buf, size_t cap) {
    size_t n = 0, max = cap - 4;
    for (uint64_t i = 0; i < s.len && n < max; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[n++] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (s.len > n) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* ---- values -------------------------------------------------------------------------- */

size_t slm_gguf_scalar_bytes(uint32_t t) {
    switch (t) {
    case SLM_GGUF_UINT8: case SLM_GGUF_INT8: case SLM_GGUF_BOOL: return 1;
    case SLM_GGUF_UINT16: case SLM_GGUF_INT16: return 2;
    case SLM_GGUF_UINT32: case SLM_GGUF_INT32: case SLM_GGUF_FLOAT32: return 4;
    case SLM_GGUF_UINT64: case SLM_GGUF_INT64: case SLM_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Smallest encoding of one value of type t (bounds array counts). */
static size_t min_value_bytes(uint32_t t) {
    if (t == SLM_GGUF_STRING) return 8;
    if (t == SLM_GGUF_ARRAY) return 12;
    return slm_gguf_scalar_bytes(t);
}

static bool is_signed_int(uint32_t t) {
    return t == SLM_GGUF_INT8 || t == SLM_GGUF_INT16 || t == SLM_GGUF_INT32 || t == SLM_GGUF_INT64;
}
static bool is_unsigned_int(uint32_t t) {
    return t == SLM_GGUF_UINT8 || t == SLM_GGUF_UINT16 || t == SLM_GGUF_UINT32 || t == SLM_GGUF_UINT64;
}

const char *slm_gguf_vtype_name(uint32_t t) {
    static const char *names[SLM_GGUF_VTYPE_COUNT] = {
        [SLM_GGUF_UINT8] = "uint8",     [SLM_GGUF_INT8] = "int8",     [SLM_GGUF_UINT16] = "uint16",
        [SLM_GGUF_INT16] = "int16",     [SLM_GGUF_UINT32] = "uint32", [SLM_GGUF_INT32] = "int32",
        [SLM_GGUF_FLOAT32] = "float32", [SLM_GGUF_BOOL] = "bool",     [SLM_GGUF_STRING] = "string",
        [SLM_GGUF_ARRAY] = "array",     [SLM_GGUF_UINT64] = "uint64", [SLM_GGUF_INT64] = "int64",
        [SLM_GGUF_FLOAT64] = "float64",
    };
    return t < SLM_GGUF_VTYPE_COUNT ? names[t] : "unknown";
}

/* Values for STRING and ARRAY array elements. First pass: items == NULL, only `used` counts.
 * Second pass: slices of `items` are handed out in the same order. */
typedef struct {
    slm_gguf_value *items;
    uint64_t used;
    uint64_t cap;
} value_pool;

static slm_status read_value(reader *r, uint32_t type, int depth, slm_gguf_value *out, value_pool *pool);

static slm_status read_scalar(reader *r, uint32_t type, slm_gguf_value *out) {
    size_t at = r->pos;
    uint64_t v;
    slm_status s = read_uint(r, (int)slm_gguf_scalar_bytes(type), slm_gguf_vtype_name(type), &v);
    if (s) return s;
    if (type == SLM_GGUF_BOOL && v > 1)
        return slm_error(SLM_ERR_FORMAT, "bool value %llu is not 0 or 1 at offset %zu", (ull)v, at);
    if (!out) return SLM_OK;
    out->type = type;
    switch (type) {
    case SLM_GGUF_INT8: out->i64 = (int8_t)(uint8_t)v; break;
    case SLM_GGUF_INT16: out->i64 = (int16_t)(uint16_t)v; break;
    case SLM_GGUF_INT32: out->i64 = (int32_t)(uint32_t)v; break;
    case SLM_GGUF_INT64: out->i64 = (int64_t)v; break;
    case SLM_GGUF_FLOAT32: {
        uint32_t bits = (uint32_t)v;
        float f;
        memcpy(&f, &bits, sizeof f);
        out->f64 = f;
        break;
    }
    case SLM_GGUF_FLOAT64: memcpy(&out->f64, &v, sizeof out->f64); break;
    case SLM_GGUF_BOOL: out->b = v != 0; break;
    default: out->u64 = v; break; /* unsigned integers */
    }
    return SLM_OK;
}

static slm_status read_array(reader *r, int depth, slm_gguf_value *out, value_pool *pool) {
    size_t at = r->pos;
    if (depth >= SLM_GGUF_MAX_NESTING)
        return slm_error(SLM_ERR_FORMAT, "arrays nested deeper than %d levels at offset %zu", SLM_GGUF_MAX_NESTING,
                         at);
    uint32_t et;
    uint64_t n;
    slm_status s = read_u32(r, "array element type", &et);
    if (s) return s;
    if (et >= SLM_GGUF_VTYPE_COUNT)
        return slm_error(SLM_ERR_FORMAT, "unknown array element type %u at offset %zu", et, at);
    if ((s = read_u64(r, "array length", &n))) return s;
    size_t min = min_value_bytes(et);
    if (n > remaining(r) / min)
        return slm_error(SLM_ERR_FORMAT,
                         "array length %llu of %s (at least %zu bytes each) exceeds remaining %zu bytes at offset %zu",
                         (ull)n, slm_gguf_vtype_name(et), min, remaining(r), at);
    /* n * min <= remaining, so the arithmetic below cannot overflow. */
    const uint8_t *raw = r->buf + r->pos;
    slm_gguf_value *items = NULL;
    if (et != SLM_GGUF_STRING && et != SLM_GGUF_ARRAY) {
        size_t bytes = (size_t)n * min;
        if (et == SLM_GGUF_BOOL) {
            for (size_t i = 0; i < bytes; i++)
                if (raw[i] > 1)
                    return slm_error(SLM_ERR_FORMAT, "element %zu: bool value %u is not 0 or 1 at offset %zu", i,
                                     raw[i], r->pos + i);
        }
        r->pos += bytes;
    } else {
        if (pool->items && n) {
            if (n > pool->cap - pool->used)
                return slm_error(SLM_ERR_FORMAT, "array at offset %zu changed between passes", at);
            items = pool->items + pool->used;
        }
        pool->used += n; /* bounded by the file size: every element takes >= 8 bytes */
        for (uint64_t i = 0; i < n; i++) {
            s = read_value(r, et, depth + 1, items ? &items[i] : NULL, pool);
            if (s) return slm_error_prefix(s, "element %llu", (ull)i);
        }
    }
    if (out) {
        out->type = SLM_GGUF_ARRAY;
        out->arr.type = et;
        out->arr.n = n;
        out->arr.raw = raw;
        out->arr.items = items;
    }
    return SLM_OK;
}

static slm_status read_value(reader *r, uint32_t type, int depth, slm_gguf_value *out, value_pool *pool) {
    if (type == SLM_GGUF_ARRAY) return read_array(r, depth, out, pool);
    if (type == SLM_GGUF_STRING) {
        slm_gguf_str str;
        slm_status s = read_str(r, "string", &str);
        if (s) return s;
        if (out) {
            out->type = SLM_GGUF_STRING;
            out->str = str;
        }
        return SLM_OK;
    }
    return read_scalar(r, type, out);
}

/* One key/value pair; kv may be NULL (first pass). */
static slm_status read_kv(reader *r, uint64_t index, slm_gguf_kv *kv, value_pool *pool) {
    char name[64];
    slm_gguf_str key;
    size_t at = r->pos;
    slm_status s = read_str(r, "key", &key);
    if (s) return slm_error_prefix(s, "metadata key #%llu", (ull)index);
    if (key.len == 0)
        return slm_error(SLM_ERR_FORMAT, "metadata key #%llu: empty key at offset %zu", (ull)index, at);
    uint32_t type;
    at = r->pos;
    if ((s = read_u32(r, "value type", &type))) goto fail;
    if (type >= SLM_GGUF_VTYPE_COUNT) {
        s = slm_error(SLM_ERR_FORMAT, "unknown value type %u at offset %zu", type, at);
        goto fail;
    }
    if ((s = read_value(r, type, 0, kv ? &kv->value : NULL, pool))) goto fail;
    if (kv) kv->key = key;
    return SLM_OK;
fail:
    return slm_error_prefix(s, "metadata key #%llu ('%s')", (ull)index, printable(key, name, sizeof name));
}

/* ---- tensor infos -------------------------------------------------------------------- */

/* One tensor info; errors name the tensor by index and, once read, by name. */
static slm_status read_tensor_info(reader *r, uint64_t index, slm_gguf_tensor *t) {
    char name[64] = "";
    size_t at = r->pos;
    slm_status s = read_str(r, "name", &t->name);
    if (s) return slm_error_prefix(s, "tensor #%llu", (ull)index);
    if (t->name.len == 0) {
        s = slm_error(SLM_ERR_FORMAT, "empty name at offset %zu", at);
        return slm_error_prefix(s, "tensor #%llu", (ull)index);
    }
    printable(t->name, name, sizeof name);
    at = r->pos;
    if ((s = read_u32(r, "n_dims", &t->n_dims))) goto fail;
    if (t->n_dims < 1 || t->n_dims > SLM_GGUF_MAX_DIMS) {
        s = slm_error(SLM_ERR_FORMAT, "n_dims %u is not in 1..%d at offset %zu", t->n_dims, SLM_GGUF_MAX_DIMS, at);
        goto fail;
    }
    /* The product of the non-zero dims must fit in int64 even when another dim is 0. */
    int64_t nonzero = 1;
    for (int d = 0; d < SLM_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if ((uint32_t)d >= t->n_dims) continue;
        uint64_t v;
        at = r->pos;
        if ((s = read_u64(r, "dim", &v))) goto fail;
        if (v > (uint64_t)INT64_MAX) {
            s = slm_error(SLM_ERR_FORMAT, "dim %d is negative (%lld) at offset %zu", d, (long long)(int64_t)v, at);
            goto fail;
        }
        t->ne[d] = (int64_t)v;
        if (v && __builtin_mul_overflow(nonzero, t->ne[d], &nonzero)) {
            s = slm_error(SLM_ERR_FORMAT, "element count overflows at dim %d (%lld) at offset %zu", d,
                          (long long)t->ne[d], at);
            goto fail;
        }
    }
    at = r->pos;
    if ((s = read_u32(r, "type", &t->type))) goto fail;
    const slm_dtype_traits *tr = slm_dtype_get(t->type);
    if (!tr || tr->block_size <= 0 || tr->block_bytes == 0) {
        s = slm_error(SLM_ERR_FORMAT, "unknown tensor type %u at offset %zu", t->type, at);
        goto fail;
    }
    if (t->ne[0] % tr->block_size != 0) {
        s = slm_error(SLM_ERR_FORMAT, "row length %lld is not a multiple of the %s block size %lld at offset %zu",
                      (long long)t->ne[0], tr->name, (long long)tr->block_size, at);
        goto fail;
    }
    int64_t rows = t->ne[1] * t->ne[2] * t->ne[3]; /* cannot overflow: bounded by `nonzero` or 0 */
    size_t row;
    if (!slm_row_bytes(t->type, t->ne[0], &row) || __builtin_mul_overflow(row, (uint64_t)rows, &t->nbytes)) {
        s = slm_error(SLM_ERR_FORMAT, "byte size of %s [%lld, %lld, %lld, %lld] overflows", tr->name,
                      (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
        goto fail;
    }
    if ((s = read_u64(r, "offset", &t->offset))) goto fail;
    t->data = NULL;
    return SLM_OK;
fail:
    return slm_error_prefix(s, "tensor #%llu ('%s')", (ull)index, name);
}

/* ---- semantic checks ----------------------------------------------------------------- */

static int str_cmp(slm_gguf_str a, slm_gguf_str b) {
    size_t n = a.len < b.len ? (size_t)a.len : (size_t)b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c) return c;
    return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

static int cmp_kv_key(const void *a, const void *b) {
    const slm_gguf_kv *x = *(const slm_gguf_kv *const *)a, *y = *(const slm_gguf_kv *const *)b;
    int c = str_cmp(x->key, y->key);
    return c ? c : (x < y ? -1 : x > y);
}

static int cmp_tensor_name(const void *a, const void *b) {
    const slm_gguf_tensor *x = *(const slm_gguf_tensor *const *)a, *y = *(const slm_gguf_tensor *const *)b;
    int c = str_cmp(x->name, y->name);
    return c ? c : (x < y ? -1 : x > y);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const slm_gguf_tensor *x = *(const slm_gguf_tensor *const *)a, *y = *(const slm_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x < y ? -1 : x > y;
}

static slm_status check_duplicate_keys(const slm_gguf *g) {
    if (g->n_kv < 2) return SLM_OK;
    const slm_gguf_kv **v = malloc((size_t)g->n_kv * sizeof *v);
    if (!v) return slm_error(SLM_ERR_NOMEM, "gguf: out of memory sorting %llu keys", (ull)g->n_kv);
    for (size_t i = 0; i < g->n_kv; i++) v[i] = &g->kv[i];
    qsort(v, (size_t)g->n_kv, sizeof *v, cmp_kv_key);
    slm_status s = SLM_OK;
    for (size_t i = 1; i < g->n_kv; i++) {
        if (str_cmp(v[i - 1]->key, v[i]->key) == 0) {
            char name[64];
            s = slm_error(SLM_ERR_FORMAT, "gguf: duplicate metadata key '%s' (#%td and #%td)",
                          printable(v[i]->key, name, sizeof name), v[i - 1] - g->kv, v[i] - g->kv);
            break;
        }
    }
    free(v);
    return s;
}

/* Duplicate names, alignment, bounds and overlaps; sets each tensor's data pointer. */
static slm_status check_tensors(slm_gguf *g) {
    char name[64], other[64];
    for (size_t i = 0; i < g->n_tensors; i++) {
        slm_gguf_tensor *t = &g->tensors[i];
        printable(t->name, name, sizeof name);
        if (t->offset % g->alignment != 0)
            return slm_error(SLM_ERR_FORMAT, "gguf: tensor '%s': offset %llu is not a multiple of the alignment %zu",
                             name, (ull)t->offset, g->alignment);
        uint64_t begin, end;
        if (__builtin_add_overflow((uint64_t)g->data_offset, t->offset, &begin) ||
            __builtin_add_overflow(begin, (uint64_t)t->nbytes, &end))
            return slm_error(SLM_ERR_FORMAT,
                             "gguf: tensor '%s': offset %llu + %zu bytes overflows (file is %zu bytes)", name,
                             (ull)t->offset, t->nbytes, g->size);
        if (end > g->size)
            return slm_error(SLM_ERR_FORMAT,
                             "gguf: tensor '%s': data [%llu, %llu) extends past end of file (%zu bytes)", name,
                             (ull)begin, (ull)end, g->size);
        t->data = g->buf + begin;
    }
    if (g->n_tensors < 2) return SLM_OK;
    slm_gguf_tensor **v = malloc((size_t)g->n_tensors * sizeof *v);
    if (!v) return slm_error(SLM_ERR_NOMEM, "gguf: out of memory sorting %llu tensors", (ull)g->n_tensors);
    slm_status s = SLM_OK;
    for (size_t i = 0; i < g->n_tensors; i++) v[i] = &g->tensors[i];
    qsort(v, (size_t)g->n_tensors, sizeof *v, cmp_tensor_name);
    for (size_t i = 1; i < g->n_tensors; i++) {
        if (str_cmp(v[i - 1]->name, v[i]->name) == 0) {
            s = slm_error(SLM_ERR_FORMAT, "gguf: duplicate tensor name '%s' (#%td and #%td)",
                          printable(v[i]->name, name, sizeof name), v[i - 1] - g->tensors, v[i] - g->tensors);
            goto done;
        }
    }
    qsort(v, (size_t)g->n_tensors, sizeof *v, cmp_tensor_offset);
    const slm_gguf_tensor *last = NULL; /* the non-empty tensor reaching furthest so far */
    for (size_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = v[i];
        if (t->nbytes == 0) continue;
        if (last && t->offset < last->offset + last->nbytes) {
            size_t d = g->data_offset;
            s = slm_error(SLM_ERR_FORMAT, "gguf: tensor '%s': data [%zu, %zu) overlaps tensor '%s' [%zu, %zu)",
                          printable(t->name, name, sizeof name), d + (size_t)t->offset,
                          d + (size_t)t->offset + t->nbytes, printable(last->name, other, sizeof other),
                          d + (size_t)last->offset, d + (size_t)last->offset + last->nbytes);
            goto done;
        }
        if (!last || t->offset + t->nbytes > last->offset + last->nbytes) last = t;
    }
done:
    free(v);
    return s;
}

static slm_status read_alignment(slm_gguf *g) {
    g->alignment = SLM_GGUF_DEFAULT_ALIGNMENT;
    const slm_gguf_value *v = slm_gguf_find(g, "general.alignment");
    if (!v) return SLM_OK;
    if (v->type != SLM_GGUF_UINT32)
        return slm_error(SLM_ERR_FORMAT, "gguf: general.alignment has type %s, expected uint32",
                         slm_gguf_vtype_name(v->type));
    if (v->u64 == 0 || (v->u64 & (v->u64 - 1)) != 0)
        return slm_error(SLM_ERR_FORMAT, "gguf: general.alignment %llu is not a non-zero power of two",
                         (ull)v->u64);
    g->alignment = (size_t)v->u64;
    return SLM_OK;
}

/* ---- parse --------------------------------------------------------------------------- */

static slm_status read_header(reader *r, uint32_t *version, uint64_t *n_tensors, uint64_t *n_kv) {
    uint64_t magic;
    if (r->size == 0) return slm_error(SLM_ERR_FORMAT, "gguf: file is empty");
    if (r->size < 4)
        return slm_error(SLM_ERR_FORMAT, "gguf: file of %zu bytes is too small for the magic", r->size);
    read_uint(r, 4, "magic", &magic);
    if (magic != GGUF_MAGIC)
        return slm_error(SLM_ERR_FORMAT,
                         "gguf: bad magic %02x %02x %02x %02x at offset 0 (expected 'GGUF'): not a GGUF file",
                         r->buf[0], r->buf[1], r->buf[2], r->buf[3]);
    slm_status s = read_u32(r, "version", version);
    if (s) return slm_error_prefix(s, "gguf: header");
    if (*version == 1)
        return slm_error(SLM_ERR_FORMAT, "gguf: version 1 is not supported (only versions 2 and 3)");
    if (*version != 2 && *version != 3)
        return slm_error(SLM_ERR_FORMAT, "gguf: unsupported version or big-endian file (version field %u = 0x%08x)",
                         *version, *version);
    if ((s = read_u64(r, "tensor count", n_tensors))) return slm_error_prefix(s, "gguf: header");
    if ((s = read_u64(r, "metadata count", n_kv))) return slm_error_prefix(s, "gguf: header");
    size_t left = remaining(r);
    if (*n_kv > left / MIN_KV_BYTES)
        return slm_error(SLM_ERR_FORMAT,
                         "gguf: header: n_kv %llu needs at least %d bytes each but only %zu bytes remain at offset %d",
                         (ull)*n_kv, MIN_KV_BYTES, left, HEADER_BYTES);
    if (*n_tensors > (left - (size_t)*n_kv * MIN_KV_BYTES) / MIN_TENSOR_BYTES)
        return slm_error(SLM_ERR_FORMAT,
                         "gguf: header: n_tensors %llu (with n_kv %llu) needs more than the %zu bytes that remain at "
                         "offset %d",
                         (ull)*n_tensors, (ull)*n_kv, left, HEADER_BYTES);
    return SLM_OK;
}

/* Walks metadata and tensor infos; with g == NULL only validates and counts pool values. */
static slm_status read_body(reader *r, slm_gguf *g, uint64_t n_kv, uint64_t n_tensors, value_pool *pool) {
    slm_status s;
    for (uint64_t i = 0; i < n_kv; i++) {
        if ((s = read_kv(r, i, g ? &g->kv[i] : NULL, pool))) return slm_error_prefix(s, "gguf");
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        slm_gguf_tensor tmp;
        if ((s = read_tensor_info(r, i, g ? &g->tensors[i] : &tmp))) return slm_error_prefix(s, "gguf");
    }
    return SLM_OK;
}

slm_status slm_gguf_parse(const void *buf, size_t size, slm_gguf **out) {
    if (!out) return slm_error(SLM_ERR_ARG, "gguf: parse: out is NULL");
    *out = NULL;
    if (!buf && size) return slm_error(SLM_ERR_ARG, "gguf: parse: buffer is NULL");
    reader r = {buf, size, 0};
    uint32_t version = 0;
    uint64_t n_tensors = 0, n_kv = 0;
    slm_status s = read_header(&r, &version, &n_tensors, &n_kv);
    if (s) return s;

    /* Pass 1: validate everything and count the values array elements need. */
    value_pool pool = {NULL, 0, 0};
    if ((s = read_body(&r, NULL, n_kv, n_tensors, &pool))) return s;
    size_t header_end = r.pos;

    /* One allocation: struct, kv[n_kv], pool[pool.used], tensors[n_tensors]. The counts are
     * bounded by the file size, so the sums cannot overflow, but check anyway. */
    size_t off_kv = sizeof(slm_gguf), off_pool, off_tensors, total;
    if (__builtin_mul_overflow((size_t)n_kv, sizeof(slm_gguf_kv), &off_pool) ||
        __builtin_add_overflow(off_pool, off_kv, &off_pool) ||
        __builtin_mul_overflow((size_t)pool.used, sizeof(slm_gguf_value), &off_tensors) ||
        __builtin_add_overflow(off_tensors, off_pool, &off_tensors) ||
        __builtin_mul_overflow((size_t)n_tensors, sizeof(slm_gguf_tensor), &total) ||
        __builtin_add_overflow(total, off_tensors, &total))
        return slm_error(SLM_ERR_FORMAT, "gguf: header sizes overflow");
    _Static_assert(sizeof(slm_gguf) % _Alignof(slm_gguf_value) == 0, "alignment of the single allocation");
    _Static_assert(sizeof(slm_gguf_kv) % _Alignof(slm_gguf_value) == 0, "alignment of the single allocation");
    _Static_assert(sizeof(slm_gguf_value) % _Alignof(slm_gguf_tensor) == 0, "alignment of the single allocation");
    uint8_t *mem = calloc(1, total);
    if (!mem) return slm_error(SLM_ERR_NOMEM, "gguf: out of memory (%zu bytes for the parsed header)", total);
    slm_gguf *g = (slm_gguf *)mem;
    g->version = version;
    g->n_kv = n_kv;
    g->kv = n_kv ? (slm_gguf_kv *)(mem + off_kv) : NULL;
    g->n_tensors = n_tensors;
    g->tensors = n_tensors ? (slm_gguf_tensor *)(mem + off_tensors) : NULL;
    g->buf = buf;
    g->size = size;

    /* Pass 2: the same walk, filling the arrays. */
    pool.items = pool.used ? (slm_gguf_value *)(mem + off_pool) : NULL;
    pool.cap = pool.used;
    pool.used = 0;
    r.pos = HEADER_BYTES;
    if ((s = read_body(&r, g, n_kv, n_tensors, &pool))) goto fail;
    if (r.pos != header_end || pool.used != pool.cap) {
        s = slm_error(SLM_ERR_FORMAT, "gguf: header changed between passes");
        goto fail;
    }
    if ((s = check_duplicate_keys(g))) goto fail;
    if ((s = read_alignment(g))) goto fail;

    /* The data section starts at the aligned end of the header. */
    size_t pad = (g->alignment - header_end % g->alignment) % g->alignment;
    if (__builtin_add_overflow(header_end, pad, &g->data_offset) || g->data_offset > size) {
        if (n_tensors) {
            s = slm_error(SLM_ERR_FORMAT,
                          "gguf: data section at %zu (header end %zu aligned to %zu) is past end of file (%zu bytes)",
                          header_end + pad, header_end, g->alignment, size);
            goto fail;
        }
        g->data_offset = size; /* metadata-only file without trailing padding */
    }
    if ((s = check_tensors(g))) goto fail;
    *out = g;
    return SLM_OK;
fail:
    free(g);
    return s;
}

/* ---- open / free --------------------------------------------------------------------- */

slm_status slm_gguf_open(const char *path, slm_gguf **out) {
    if (!out) return slm_error(SLM_ERR_ARG, "gguf: open: out is NULL");
    *out = NULL;
    if (!path || !*path) return slm_error(SLM_ERR_ARG, "gguf: open: empty path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return slm_error(SLM_ERR_IO, "gguf: %s: no such file", path);
        return slm_error(SLM_ERR_IO, "gguf: cannot open %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return slm_error(SLM_ERR_IO, "gguf: cannot stat %s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return slm_error(SLM_ERR_IO, "gguf: %s is a directory, not a model file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return slm_error(SLM_ERR_IO, "gguf: %s is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return slm_error(SLM_ERR_FORMAT, "gguf: %s is empty (0 bytes)", path);
    }
    if ((uintmax_t)st.st_size > SIZE_MAX) {
        close(fd);
        return slm_error(SLM_ERR_IO, "gguf: %s is too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping stays valid */
    if (map == MAP_FAILED)
        return slm_error(SLM_ERR_IO, "gguf: cannot mmap %s (%zu bytes): %s", path, size, strerror(e));
    slm_gguf *g;
    slm_status s = slm_gguf_parse(map, size, &g);
    if (s) {
        munmap(map, size);
        return slm_error_prefix(s, "%s", path);
    }
    g->map = map;
    *out = g;
    return SLM_OK;
}

slm_status slm_gguf_open_memory(void *buf, size_t size, void (*release)(void *buf, size_t size), slm_gguf **out) {
    slm_status s = slm_gguf_parse(buf, size, out);
    if (s) {
        if (release) release(buf, size);
        return s;
    }
    (*out)->release = release;
    return SLM_OK;
}

void slm_gguf_free(slm_gguf *g) {
    if (!g) return;
    if (g->map) munmap(g->map, g->size);
    if (g->release) g->release((void *)g->buf, g->size);
    free(g); /* kv, pool and tensors live in the same allocation */
}

/* ---- lookups and getters ------------------------------------------------------------- */

bool slm_gguf_str_eq(slm_gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

char *slm_gguf_str_copy(slm_gguf_str s, char *dst, size_t cap) {
    if (!cap) return dst;
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    if (n) memcpy(dst, s.ptr, n);
    dst[n] = '\0';
    return dst;
}

const slm_gguf_value *slm_gguf_find(const slm_gguf *g, const char *key) {
    if (!g || !key) return NULL;
    for (size_t i = 0; i < g->n_kv; i++)
        if (slm_gguf_str_eq(g->kv[i].key, key)) return &g->kv[i].value;
    return NULL;
}

const slm_gguf_tensor *slm_gguf_find_tensor(const slm_gguf *g, const char *name) {
    if (!g || !name) return NULL;
    for (size_t i = 0; i < g->n_tensors; i++)
        if (slm_gguf_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static slm_status find_or_fail(const slm_gguf *g, const char *key, const slm_gguf_value **v) {
    *v = slm_gguf_find(g, key);
    if (!*v) return slm_error(SLM_ERR_NOT_FOUND, "gguf: key '%s' not found", key ? key : "(null)");
    return SLM_OK;
}

slm_status slm_gguf_get_u32(const slm_gguf *g, const char *key, uint32_t *out) {
    const slm_gguf_value *v;
    slm_status s = find_or_fail(g, key, &v);
    if (s) return s;
    if (is_unsigned_int(v->type)) {
        if (v->u64 > UINT32_MAX)
            return slm_error(SLM_ERR_FORMAT, "gguf: key '%s': value %llu does not fit in uint32", key, (ull)v->u64);
        *out = (uint32_t)v->u64;
        return SLM_OK;
    }
    if (is_signed_int(v->type)) {
        if (v->i64 < 0 || v->i64 > (int64_t)UINT32_MAX)
            return slm_error(SLM_ERR_FORMAT, "gguf: key '%s': value %lld does not fit in uint32", key,
                             (long long)v->i64);
        *out = (uint32_t)v->i64;
        return SLM_OK;
    }
    return slm_error(SLM_ERR_FORMAT, "gguf: key '%s' has type %s, expected an integer", key,
                     slm_gguf_vtype_name(v->type));
}

slm_status slm_gguf_get_f32(const slm_gguf *g, const char *key, float *out) {
    const slm_gguf_value *v;
    slm_status s = find_or_fail(g, key, &v);
    if (s) return s;
    if (v->type == SLM_GGUF_FLOAT32 || v->type == SLM_GGUF_FLOAT64) {
        if (isfinite(v->f64) && fabs(v->f64) > FLT_MAX)
            return slm_error(SLM_ERR_FORMAT, "gguf: key '%s': value %g does not fit in float32", key, v->f64);
        *out = (float)v->f64;
    } else if (is_unsigned_int(v->type)) *out = (float)v->u64;
    else if (is_signed_int(v->type)) *out = (float)v->i64;
    else
        return slm_error(SLM_ERR_FORMAT, "gguf: key '%s' has type %s, expected a number", key,
                         slm_gguf_vtype_name(v->type));
    return SLM_OK;
}

slm_status slm_gguf_get_bool(const slm_gguf *g, const char *key, bool *out) {
    const slm_gguf_value *v;
    slm_status s = find_or_fail(g, key, &v);
    if (s) return s;
    if (v->type != SLM_GGUF_BOOL)
        return slm_error(SLM_ERR_FORMAT, "gguf: key '%s' has type %s, expected bool", key,
                         slm_gguf_vtype_name(v->type));
    *out = v->b;
    return SLM_OK;
}

slm_status slm_gguf_get_str(const slm_gguf *g, const char *key, slm_gguf_str *out) {
    const slm_gguf_value *v;
    slm_status s = find_or_fail(g, key, &v);
    if (s) return s;
    if (v->type != SLM_GGUF_STRING)
        return slm_error(SLM_ERR_FORMAT, "gguf: key '%s' has type %s, expected string", key,
                         slm_gguf_vtype_name(v->type));
    *out = v->str;
    return SLM_OK;
}

slm_status slm_gguf_get_arr(const slm_gguf *g, const char *key, uint32_t type, const slm_gguf_value **out) {
    const slm_gguf_value *v;
    slm_status s = find_or_fail(g, key, &v);
    if (s) return s;
    if (v->type != SLM_GGUF_ARRAY)
        return slm_error(SLM_ERR_FORMAT, "gguf: key '%s' has type %s, expected array of %s", key,
                         slm_gguf_vtype_name(v->type), slm_gguf_vtype_name(type));
    if (v->arr.type != type)
        return slm_error(SLM_ERR_FORMAT, "gguf: key '%s' is an array of %s, expected array of %s", key,
                         slm_gguf_vtype_name(v->arr.type), slm_gguf_vtype_name(type));
    *out = v;
    return SLM_OK;
}
