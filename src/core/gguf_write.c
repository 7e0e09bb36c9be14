/* gguf_write.c - GGUF v3 writer: layout, encoding, atomic write, read-back verification.
 *
 * Layout written (the reader's, see gguf.c): header, key/values in the order they were set,
 * tensor infos in the order they were added, zero padding to the alignment, then each
 * tensor's data at its offset, followed by zero padding to the alignment (the last tensor
 * too). Offsets are relative to the start of the data section, each a multiple of the
 * alignment. Nothing depends on time, addresses or the environment, so the same input gives
 * the same bytes.
 *
 * Memory: tensors with a producer are asked for their bytes one at a time, in order, and
 * released right after they are written; the read-back check keeps at most VERIFY_CHUNK
 * bytes of the mapped output resident. */
#include "gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "dtype.h"

typedef unsigned long long ull;

typedef struct {
    char *key;            /* owned */
    slm_gguf_value value; /* borrowed, except a string in `owned` */
    char *owned;          /* copy of a string set with set_str, or NULL */
} wkv;

typedef struct {
    char *name; /* owned */
    uint32_t n_dims;
    int64_t ne[SLM_GGUF_MAX_DIMS];
    uint32_t type;
    const void *data; /* borrowed, or NULL when src.produce gives the bytes */
    slm_gguf_tensor_source src;
    size_t nbytes;
    uint64_t offset;   /* relative to the data section, set by write */
    uint64_t checksum; /* of the bytes written, set by write */
} wtensor;

struct slm_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    uint64_t fail_after; /* test hook: 0 = off */
};

/* ---- building ------------------------------------------------------------------------ */

slm_status slm_gguf_writer_create(slm_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return slm_error(SLM_ERR_NOMEM, "gguf write: out of memory");
    return SLM_OK;
}

void slm_gguf_writer_free(slm_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].owned);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

void slm_gguf_writer_fail_after(slm_gguf_writer *w, uint64_t bytes) { w->fail_after = bytes; }

size_t slm_gguf_writer_n_kv(const slm_gguf_writer *w) { return w->n_kv; }

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static wkv *find_kv(slm_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return &w->kv[i];
    return NULL;
}

/* The slot for key: the existing one (its old string freed) or a new one at the end. */
static slm_status kv_slot(slm_gguf_writer *w, const char *key, wkv **out) {
    if (!key || !*key) return slm_error(SLM_ERR_ARG, "gguf write: empty metadata key");
    wkv *kv = find_kv(w, key);
    if (kv) {
        free(kv->owned);
        kv->owned = NULL;
        *out = kv;
        return SLM_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *p = realloc(w->kv, cap * sizeof *p);
        if (!p) return slm_error(SLM_ERR_NOMEM, "gguf write: out of memory");
        w->kv = p;
        w->cap_kv = cap;
    }
    kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    if (!(kv->key = dup_str(key))) return slm_error(SLM_ERR_NOMEM, "gguf write: out of memory");
    w->n_kv++;
    *out = kv;
    return SLM_OK;
}

slm_status slm_gguf_writer_set(slm_gguf_writer *w, const char *key, const slm_gguf_value *v) {
    if (!v || v->type >= SLM_GGUF_VTYPE_COUNT)
        return slm_error(SLM_ERR_ARG, "gguf write: key '%s': bad value type", key ? key : "");
    wkv *kv;
    slm_status s = kv_slot(w, key, &kv);
    if (s) return s;
    kv->value = *v;
    return SLM_OK;
}

slm_status slm_gguf_writer_copy_kvs(slm_gguf_writer *w, const slm_gguf *g) {
    char key[256];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (g->kv[i].key.len >= sizeof key)
            return slm_error(SLM_ERR_UNSUPPORTED, "gguf write: metadata key #%llu is longer than %zu bytes", (ull)i,
                             sizeof key - 1);
        slm_gguf_str_copy(g->kv[i].key, key, sizeof key);
        if (strlen(key) != g->kv[i].key.len)
            return slm_error(SLM_ERR_UNSUPPORTED, "gguf write: metadata key #%llu contains a NUL byte", (ull)i);
        slm_status s = slm_gguf_writer_set(w, key, &g->kv[i].value);
        if (s) return s;
    }
    return SLM_OK;
}

slm_status slm_gguf_writer_set_str(slm_gguf_writer *w, const char *key, const char *str) {
    char *copy = dup_str(str);
    if (!copy) return slm_error(SLM_ERR_NOMEM, "gguf write: out of memory");
    wkv *kv;
    slm_status s = kv_slot(w, key, &kv);
    if (s) {
        free(copy);
        return s;
    }
    kv->owned = copy;
    memset(&kv->value, 0, sizeof kv->value);
    kv->value.type = SLM_GGUF_STRING;
    kv->value.str.ptr = copy;
    kv->value.str.len = strlen(copy);
    return SLM_OK;
}

static slm_status set_scalar(slm_gguf_writer *w, const char *key, slm_gguf_value v) {
    return slm_gguf_writer_set(w, key, &v);
}

slm_status slm_gguf_writer_set_u32(slm_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, (slm_gguf_value){.type = SLM_GGUF_UINT32, .u64 = v});
}
slm_status slm_gguf_writer_set_i32(slm_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, (slm_gguf_value){.type = SLM_GGUF_INT32, .i64 = v});
}
slm_status slm_gguf_writer_set_u64(slm_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, (slm_gguf_value){.type = SLM_GGUF_UINT64, .u64 = v});
}
slm_status slm_gguf_writer_set_f32(slm_gguf_writer *w, const char *key, float v) {
    return set_scalar(w, key, (slm_gguf_value){.type = SLM_GGUF_FLOAT32, .f64 = v});
}
slm_status slm_gguf_writer_set_bool(slm_gguf_writer *w, const char *key, bool v) {
    return set_scalar(w, key, (slm_gguf_value){.type = SLM_GGUF_BOOL, .b = v});
}

void slm_gguf_writer_remove(slm_gguf_writer *w, const char *key) {
    wkv *kv = find_kv(w, key);
    if (!kv) return;
    free(kv->key);
    free(kv->owned);
    size_t i = (size_t)(kv - w->kv);
    memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof *w->kv);
    w->n_kv--;
}

static slm_status add_tensor(slm_gguf_writer *w, const char *name, uint32_t n_dims, const int64_t *ne,
                             uint32_t dtype, const void *data, const slm_gguf_tensor_source *src, size_t nbytes) {
    if (!name || !*name) return slm_error(SLM_ERR_ARG, "gguf write: empty tensor name");
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return slm_error(SLM_ERR_ARG, "gguf write: duplicate tensor '%s'", name);
    if (n_dims < 1 || n_dims > SLM_GGUF_MAX_DIMS)
        return slm_error(SLM_ERR_ARG, "gguf write: tensor '%s': n_dims %u is not in 1..%d", name, n_dims,
                         SLM_GGUF_MAX_DIMS);
    const slm_dtype_traits *tr = slm_dtype_get(dtype);
    if (!tr || tr->block_size <= 0 || tr->block_bytes == 0)
        return slm_error(SLM_ERR_ARG, "gguf write: tensor '%s': unknown dtype %u", name, dtype);
    wtensor t = {.n_dims = n_dims, .type = dtype, .data = data, .nbytes = nbytes};
    if (src) t.src = *src;
    int64_t rows = 1;
    for (int d = 0; d < SLM_GGUF_MAX_DIMS; d++) {
        t.ne[d] = (uint32_t)d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 0) return slm_error(SLM_ERR_ARG, "gguf write: tensor '%s': dim %d is negative", name, d);
        if (d > 0 && __builtin_mul_overflow(rows, t.ne[d], &rows))
            return slm_error(SLM_ERR_ARG, "gguf write: tensor '%s': element count overflows", name);
    }
    size_t row, want;
    if (!slm_row_bytes(dtype, t.ne[0], &row))
        return slm_error(SLM_ERR_ARG, "gguf write: tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                         name, (long long)t.ne[0], tr->name, (long long)tr->block_size);
    if (__builtin_mul_overflow(row, (size_t)rows, &want))
        return slm_error(SLM_ERR_ARG, "gguf write: tensor '%s': byte size overflows", name);
    if (want != nbytes)
        return slm_error(SLM_ERR_ARG, "gguf write: tensor '%s': %zu bytes given, the %s shape needs %zu", name,
                         nbytes, tr->name, want);
    if (nbytes && !data && !(src && src->produce))
        return slm_error(SLM_ERR_ARG, "gguf write: tensor '%s': no data", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *p = realloc(w->t, cap * sizeof *p);
        if (!p) return slm_error(SLM_ERR_NOMEM, "gguf write: out of memory");
        w->t = p;
        w->cap_t = cap;
    }
    if (!(t.name = dup_str(name))) return slm_error(SLM_ERR_NOMEM, "gguf write: out of memory");
    w->t[w->n_t++] = t;
    return SLM_OK;
}

slm_status slm_gguf_writer_add_tensor(slm_gguf_writer *w, const char *name, uint32_t n_dims, const int64_t *ne,
                                      uint32_t dtype, const void *data, size_t nbytes) {
    return add_tensor(w, name, n_dims, ne, dtype, data, NULL, nbytes);
}

slm_status slm_gguf_writer_add_tensor_src(slm_gguf_writer *w, const char *name, uint32_t n_dims, const int64_t *ne,
                                          uint32_t dtype, size_t nbytes, const slm_gguf_tensor_source *src) {
    if (!src || !src->produce)
        return slm_error(SLM_ERR_ARG, "gguf write: tensor '%s': no producer", name ? name : "");
    return add_tensor(w, name, n_dims, ne, dtype, NULL, src, nbytes);
}

/* ---- encoding ------------------------------------------------------------------------ */


/* Checks a value before anything is written (types, nesting, element storage, bools). */
static slm_status check_value(const slm_gguf_value *v, int depth, const char *key) {
    if (v->type >= SLM_GGUF_VTYPE_COUNT)
        return slm_error(SLM_ERR_ARG, "gguf write: key '%s': unknown value type %u", key, v->type);
    if (v->type == SLM_GGUF_STRING) {
        if (v->str.len && !v->str.ptr) return slm_error(SLM_ERR_ARG, "gguf write: key '%s': NULL string", key);
        return SLM_OK;
    }
    if (v->type != SLM_GGUF_ARRAY) return SLM_OK;
    if (depth >= SLM_GGUF_MAX_NESTING)
        return slm_error(SLM_ERR_ARG, "gguf write: key '%s': arrays nested deeper than %d levels", key,
                         SLM_GGUF_MAX_NESTING);
    uint32_t et = v->arr.type;
    if (et >= SLM_GGUF_VTYPE_COUNT)
        return slm_error(SLM_ERR_ARG, "gguf write: key '%s': unknown array element type %u", key, et);
    if (v->arr.n == 0) return SLM_OK;
    if (et == SLM_GGUF_STRING || et == SLM_GGUF_ARRAY) {
        if (!v->arr.items) return slm_error(SLM_ERR_ARG, "gguf write: key '%s': array without items", key);
        for (uint64_t i = 0; i < v->arr.n; i++) {
            if (v->arr.items[i].type != et)
                return slm_error(SLM_ERR_ARG, "gguf write: key '%s': element %llu has type %s in an array of %s",
                                 key, (ull)i, slm_gguf_vtype_name(v->arr.items[i].type), slm_gguf_vtype_name(et));
            slm_status s = check_value(&v->arr.items[i], depth + 1, key);
            if (s) return s;
        }
        return SLM_OK;
    }
    if (!v->arr.raw) return slm_error(SLM_ERR_ARG, "gguf write: key '%s': array without data", key);
    if (v->arr.n > SIZE_MAX / slm_gguf_scalar_bytes(et))
        return slm_error(SLM_ERR_ARG, "gguf write: key '%s': array too large", key);
    if (et == SLM_GGUF_BOOL)
        for (uint64_t i = 0; i < v->arr.n; i++)
            if (v->arr.raw[i] > 1)
                return slm_error(SLM_ERR_ARG, "gguf write: key '%s': bool element %llu is not 0 or 1", key, (ull)i);
    return SLM_OK;
}

/* The output: an atomic file plus a byte count, a running checksum and the failure hook. */
typedef struct {
    slm_afile f;
    uint64_t pos;
    uint64_t fail_after;
} out_file;

static void put(out_file *o, const void *p, size_t n) {
    if (o->f.failed || n == 0) return;
    if (o->fail_after && o->pos + n > o->fail_after) {
        size_t part = (size_t)(o->fail_after - o->pos);
        slm_afile_write(&o->f, p, part);
        o->pos += part;
        if (!o->f.failed) o->f.failed = ENOSPC;
        return;
    }
    slm_afile_write(&o->f, p, n);
    o->pos += n;
}

static void put_le(out_file *o, uint64_t v, int n) {
    uint8_t b[8];
    for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(o, b, (size_t)n);
}

static void put_str(out_file *o, const char *p, uint64_t len) {
    put_le(o, len, 8);
    put(o, p, (size_t)len);
}

static void put_zeros(out_file *o, size_t n) {
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        put(o, zeros, k);
        n -= k;
    }
}

static void put_value(out_file *o, const slm_gguf_value *v) {
    switch (v->type) {
    case SLM_GGUF_STRING: put_str(o, v->str.ptr, v->str.len); break;
    case SLM_GGUF_ARRAY:
        put_le(o, v->arr.type, 4);
        put_le(o, v->arr.n, 8);
        if (v->arr.type == SLM_GGUF_STRING || v->arr.type == SLM_GGUF_ARRAY) {
            for (uint64_t i = 0; i < v->arr.n; i++) put_value(o, &v->arr.items[i]);
        } else if (v->arr.n) {
            put(o, v->arr.raw, (size_t)v->arr.n * slm_gguf_scalar_bytes(v->arr.type)); /* already little-endian */
        }
        break;
    case SLM_GGUF_FLOAT32: {
        float f = (float)v->f64;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        put_le(o, bits, 4);
        break;
    }
    case SLM_GGUF_FLOAT64: {
        uint64_t bits;
        memcpy(&bits, &v->f64, 8);
        put_le(o, bits, 8);
        break;
    }
    case SLM_GGUF_BOOL: put_le(o, v->b ? 1 : 0, 1); break;
    case SLM_GGUF_INT8: case SLM_GGUF_INT16: case SLM_GGUF_INT32: case SLM_GGUF_INT64:
        put_le(o, (uint64_t)v->i64, (int)slm_gguf_scalar_bytes(v->type));
        break;
    default: put_le(o, v->u64, (int)slm_gguf_scalar_bytes(v->type)); break;
    }
}

/* FNV-1a, 64-bit: a checksum of tensor bytes for the read-back check, continued from h
 * (start with FNV_START). */
#define FNV_START 0xcbf29ce484222325ull
static uint64_t checksum(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Read-back granule: the verification maps the file but keeps at most this many bytes of it
 * resident, dropping each chunk's pages once it is checksummed. */
#define VERIFY_CHUNK ((size_t)4 << 20)

/* Drops the resident pages of [p, p + n) of a read-only file mapping (rounded out to pages;
 * the bytes are read from the file again if touched later). */
static void drop_pages(const void *p, size_t n) {
    if (!n) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = (uintptr_t)p / page * page, hi = ((uintptr_t)p + n + page - 1) / page * page;
    (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* The checksum of a mapped tensor, chunk by chunk, dropping the pages of [lo, chunk end) as
 * it goes: lo is where the data section starts, so pages that fault-around mapped behind
 * the chunks already dropped go too. */
static uint64_t checksum_mapped(const uint8_t *lo, const void *p, size_t n) {
    uint64_t h = FNV_START;
    for (size_t at = 0; at < n; at += VERIFY_CHUNK) {
        const size_t k = n - at < VERIFY_CHUNK ? n - at : VERIFY_CHUNK;
        const uint8_t *c = (const uint8_t *)p + at;
        h = checksum(h, c, k);
        if (c >= lo) drop_pages(lo, (size_t)(c + k - lo));
    }
    return h;
}

static slm_status alignment_of(slm_gguf_writer *w, size_t *align) {
    *align = SLM_GGUF_DEFAULT_ALIGNMENT;
    wkv *kv = find_kv(w, "general.alignment");
    if (!kv) return SLM_OK;
    if (kv->value.type != SLM_GGUF_UINT32)
        return slm_error(SLM_ERR_ARG, "gguf write: general.alignment has type %s, expected uint32",
                         slm_gguf_vtype_name(kv->value.type));
    uint64_t a = kv->value.u64;
    if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 30))
        return slm_error(SLM_ERR_ARG, "gguf write: general.alignment %llu is not a power of two", (ull)a);
    *align = (size_t)a;
    return SLM_OK;
}

/* Reads the temporary file back and compares it with what was meant to be written. */
static slm_status verify(const slm_gguf_writer *w, const char *tmp, uint64_t size) {
    slm_gguf *g;
    slm_status s = slm_gguf_open(tmp, &g);
    if (s) return slm_error_prefix(s, "read-back check");
    s = SLM_OK;
    if (g->size != size) {
        s = slm_error(SLM_ERR_IO, "read-back check: file has %zu bytes, %llu were written", g->size, (ull)size);
        goto done;
    }
    if (g->version != 3 || g->n_kv != w->n_kv || g->n_tensors != w->n_t) {
        s = slm_error(SLM_ERR_IO, "read-back check: version %u, %llu keys, %llu tensors; expected 3, %zu, %zu",
                      g->version, (ull)g->n_kv, (ull)g->n_tensors, w->n_kv, w->n_t);
        goto done;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!slm_gguf_str_eq(g->kv[i].key, w->kv[i].key) || g->kv[i].value.type != w->kv[i].value.type) {
            s = slm_error(SLM_ERR_IO, "read-back check: metadata key #%zu ('%s') differs", i, w->kv[i].key);
            goto done;
        }
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        const slm_gguf_tensor *r = &g->tensors[i];
        bool same = slm_gguf_str_eq(r->name, t->name) && r->type == t->type && r->n_dims == t->n_dims &&
                    r->offset == t->offset && r->nbytes == t->nbytes;
        for (int d = 0; d < SLM_GGUF_MAX_DIMS; d++) same = same && r->ne[d] == t->ne[d];
        if (!same) {
            s = slm_error(SLM_ERR_IO, "read-back check: tensor #%zu ('%s') has a different name, dtype or shape", i,
                          t->name);
            goto done;
        }
        if (checksum_mapped(g->buf + g->data_offset, r->data, r->nbytes) != t->checksum) {
            s = slm_error(SLM_ERR_IO, "read-back check: tensor '%s': data checksum differs", t->name);
            goto done;
        }
    }
done:
    slm_gguf_free(g);
    return s;
}

slm_status slm_gguf_writer_write(slm_gguf_writer *w, const char *path) {
    size_t align;
    slm_status s = alignment_of(w, &align);
    if (s) return s;
    for (size_t i = 0; i < w->n_kv; i++)
        if ((s = check_value(&w->kv[i].value, 0, w->kv[i].key))) return s;
    /* Data offsets: each tensor starts at the next multiple of the alignment. */
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        uint64_t end = off + w->t[i].nbytes;
        if (end < off || end > UINT64_MAX - align)
            return slm_error(SLM_ERR_ARG, "gguf write: data size overflows at tensor '%s'", w->t[i].name);
        off = (end + align - 1) / align * align;
    }

    out_file o = {.fail_after = w->fail_after};
    if ((s = slm_afile_open(&o.f, path))) return s;
    put_le(&o, 0x46554747u, 4); /* "GGUF" */
    put_le(&o, 3, 4);
    put_le(&o, w->n_t, 8);
    put_le(&o, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&o, w->kv[i].key, strlen(w->kv[i].key));
        put_le(&o, w->kv[i].value.type, 4);
        put_value(&o, &w->kv[i].value);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&o, t->name, strlen(t->name));
        put_le(&o, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) put_le(&o, (uint64_t)t->ne[d], 8);
        put_le(&o, t->type, 4);
        put_le(&o, t->offset, 8);
    }
    put_zeros(&o, (size_t)((align - o.pos % align) % align));
    uint64_t data_start = o.pos;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        if (o.f.failed) break; /* reported below; no more tensors are produced */
        const void *data = t->data;
        if (t->src.produce) {
            if ((s = t->src.produce(t->src.user, t->src.index, &data)) || (!data && t->nbytes)) {
                if (!s) s = slm_error(SLM_ERR_ARG, "gguf write: tensor '%s': producer gave no data", t->name);
                slm_afile_abort(&o.f);
                return slm_error_prefix(s, "%s", path);
            }
        }
        t->checksum = checksum(FNV_START, data, t->nbytes);
        put(&o, data, t->nbytes);
        if (t->src.produce && t->src.release) t->src.release(t->src.user, t->src.index, data);
        uint64_t end = t->offset + t->nbytes;
        put_zeros(&o, (size_t)((align - end % align) % align));
    }
    int e = slm_afile_flush(&o.f);
    if (!e && o.pos != data_start + off && w->n_t) e = EIO;
    if (e) {
        slm_afile_abort(&o.f);
        return slm_error(SLM_ERR_IO, "%s: write failed: %s (nothing was written)", path, strerror(e));
    }
    if ((s = verify(w, o.f.tmp, o.pos))) {
        slm_afile_abort(&o.f);
        return slm_error_prefix(s, "%s", path);
    }
    return slm_afile_commit(&o.f);
}
