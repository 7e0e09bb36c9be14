/* test_gguf.c - the GGUF reader on a valid in-memory file, one corrupt file per validation
 * rule, truncation at every byte, random bit flips, the seed corpus and the real model. */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/gguf.h"
#include "core/status.h"
#include "test.h"

/* ---- a small GGUF writer ------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void put(wbuf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_le(wbuf *b, uint64_t v, int bytes) {
    uint8_t t[8];
    for (int i = 0; i < bytes; i++) t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)bytes);
}
static void put_u8(wbuf *b, uint8_t v) { put_le(b, v, 1); }
static void put_u16(wbuf *b, uint16_t v) { put_le(b, v, 2); }
static void put_u32(wbuf *b, uint32_t v) { put_le(b, v, 4); }
static void put_u64(wbuf *b, uint64_t v) { put_le(b, v, 8); }
static void put_f32(wbuf *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}
static void put_f64(wbuf *b, double f) {
    uint64_t u;
    memcpy(&u, &f, 8);
    put_u64(b, u);
}
static void put_str(wbuf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad_to(wbuf *b, size_t align) {
    while (b->n % align) put_u8(b, 0);
}
static void header(wbuf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
/* Key and type; returns the offset of the type field. */
static size_t kv_head(wbuf *b, const char *key, uint32_t type) {
    put_str(b, key);
    size_t at = b->n;
    put_u32(b, type);
    return at;
}
/* Array head; returns the offset of the element type field. */
static size_t arr_head(wbuf *b, uint32_t etype, uint64_t n) {
    size_t at = b->n;
    put_u32(b, etype);
    put_u64(b, n);
    return at;
}

/* ---- the valid file and where its fields are ----------------------------------------- */

#define VALID_ALIGN 64
#define N_TENSORS 4

typedef struct {
    size_t version, n_tensors, n_kv;
    size_t key_u8, key_i8;          /* offsets of the key strings' length fields */
    size_t vtype_u16;               /* value type field of test.u16 */
    size_t bool_val, bool_arr_elem; /* a bool value and the second bool array element */
    size_t str_len;                 /* length field of test.str's value */
    size_t arr_len, arr_etype;      /* test.arr_i32's length and element type fields */
    size_t align_type, align_val;
    size_t name[N_TENSORS], n_dims[N_TENSORS], dim[N_TENSORS][4], type[N_TENSORS], offset[N_TENSORS];
    uint64_t toff[N_TENSORS];  /* tensor offsets relative to the data section */
    size_t tbytes[N_TENSORS];  /* tensor byte sizes */
    size_t data_offset;        /* start of the data section */
} layout;

static const char *tensor_names[N_TENSORS] = {"blk.0.a", "blk.0.b", "blk.0.c", "blk.0.d"};
static const uint32_t tensor_types[N_TENSORS] = {SLM_DT_F32, SLM_DT_F16, SLM_DT_Q8_0, SLM_DT_Q4_1};
static const uint32_t tensor_ndims[N_TENSORS] = {2, 1, 2, 3};
static const int64_t tensor_dims[N_TENSORS][4] = {{8, 3, 1, 1}, {16, 1, 1, 1}, {64, 2, 1, 1}, {32, 1, 2, 1}};
static const size_t tensor_bytes[N_TENSORS] = {8 * 3 * 4, 16 * 2, 2 * 34 * 2, 1 * 20 * 2};
#define N_KV 21

/* Writes the valid test file: every value type, a string array, a nested array, an empty
 * array, general.alignment 64 and four tensors (f32, f16, q8_0, q4_1). The last tensor ends
 * exactly at the end of the file. */
static void build_valid(wbuf *b, layout *L) {
    memset(L, 0, sizeof *L);
    put(b, "GGUF", 4);
    L->version = b->n;
    put_u32(b, 3);
    L->n_tensors = b->n;
    put_u64(b, N_TENSORS);
    L->n_kv = b->n;
    put_u64(b, N_KV);

    kv_head(b, "general.architecture", SLM_GGUF_STRING);
    put_str(b, "llama");
    L->key_u8 = b->n;
    kv_head(b, "test.u8", SLM_GGUF_UINT8);
    put_u8(b, 200);
    L->key_i8 = b->n;
    kv_head(b, "test.i8", SLM_GGUF_INT8);
    put_u8(b, (uint8_t)-5);
    L->vtype_u16 = kv_head(b, "test.u16", SLM_GGUF_UINT16);
    put_u16(b, 60000);
    kv_head(b, "test.i16", SLM_GGUF_INT16);
    put_u16(b, (uint16_t)-30000);
    kv_head(b, "test.u32", SLM_GGUF_UINT32);
    put_u32(b, 4000000000u);
    kv_head(b, "test.i32", SLM_GGUF_INT32);
    put_u32(b, (uint32_t)-2000000000);
    kv_head(b, "test.i32pos", SLM_GGUF_INT32);
    put_u32(b, 7);
    kv_head(b, "test.f32", SLM_GGUF_FLOAT32);
    put_f32(b, 1.5f);
    kv_head(b, "test.bool", SLM_GGUF_BOOL);
    L->bool_val = b->n;
    put_u8(b, 1);
    kv_head(b, "test.u64", SLM_GGUF_UINT64);
    put_u64(b, 1ull << 40);
    kv_head(b, "test.i64", SLM_GGUF_INT64);
    put_u64(b, (uint64_t)-(1ll << 40));
    kv_head(b, "test.f64", SLM_GGUF_FLOAT64);
    put_f64(b, 3.25);
    kv_head(b, "test.str", SLM_GGUF_STRING);
    L->str_len = b->n;
    put_str(b, "hello");
    kv_head(b, "test.arr_i32", SLM_GGUF_ARRAY);
    L->arr_etype = arr_head(b, SLM_GGUF_INT32, 3);
    L->arr_len = L->arr_etype + 4;
    put_u32(b, 1);
    put_u32(b, (uint32_t)-2);
    put_u32(b, 3);
    kv_head(b, "test.arr_str", SLM_GGUF_ARRAY);
    arr_head(b, SLM_GGUF_STRING, 3);
    put_str(b, "a");
    put_str(b, "bc");
    put_str(b, "");
    kv_head(b, "test.arr_nested", SLM_GGUF_ARRAY); /* [[1, 2], [3], [["x"]]] as u16 / string */
    arr_head(b, SLM_GGUF_ARRAY, 3);
    arr_head(b, SLM_GGUF_UINT16, 2);
    put_u16(b, 1);
    put_u16(b, 2);
    arr_head(b, SLM_GGUF_UINT16, 1);
    put_u16(b, 3);
    arr_head(b, SLM_GGUF_ARRAY, 1);
    arr_head(b, SLM_GGUF_STRING, 1);
    put_str(b, "x");
    kv_head(b, "test.arr_empty", SLM_GGUF_ARRAY);
    arr_head(b, SLM_GGUF_FLOAT32, 0);
    kv_head(b, "test.arr_bool", SLM_GGUF_ARRAY);
    arr_head(b, SLM_GGUF_BOOL, 2);
    put_u8(b, 1);
    L->bool_arr_elem = b->n;
    put_u8(b, 0);
    kv_head(b, "test.arr_f64", SLM_GGUF_ARRAY);
    arr_head(b, SLM_GGUF_FLOAT64, 2);
    put_f64(b, -0.5);
    put_f64(b, 1e300);
    L->align_type = kv_head(b, "general.alignment", SLM_GGUF_UINT32);
    L->align_val = b->n;
    put_u32(b, VALID_ALIGN);

    uint64_t off = 0;
    for (int t = 0; t < N_TENSORS; t++) {
        L->name[t] = b->n;
        put_str(b, tensor_names[t]);
        L->n_dims[t] = b->n;
        put_u32(b, tensor_ndims[t]);
        for (uint32_t d = 0; d < tensor_ndims[t]; d++) {
            L->dim[t][d] = b->n;
            put_u64(b, (uint64_t)tensor_dims[t][d]);
        }
        L->type[t] = b->n;
        put_u32(b, tensor_types[t]);
        L->offset[t] = b->n;
        put_u64(b, off);
        L->toff[t] = off;
        L->tbytes[t] = tensor_bytes[t];
        off += (tensor_bytes[t] + VALID_ALIGN - 1) / VALID_ALIGN * VALID_ALIGN;
    }
    pad_to(b, VALID_ALIGN);
    L->data_offset = b->n;
    for (int t = 0; t < N_TENSORS; t++) {
        while (b->n < L->data_offset + L->toff[t]) put_u8(b, 0xee);
        for (size_t j = 0; j < tensor_bytes[t]; j++) put_u8(b, (uint8_t)(t * 31 + j));
    }
}

static void patch(uint8_t *p, size_t at, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

/* ---- walking a parsed file (also what the fuzz target does) ---------------------------- */

static size_t elem_bytes(uint32_t t) {
    switch (t) {
    case SLM_GGUF_UINT8: case SLM_GGUF_INT8: case SLM_GGUF_BOOL: return 1;
    case SLM_GGUF_UINT16: case SLM_GGUF_INT16: return 2;
    case SLM_GGUF_UINT32: case SLM_GGUF_INT32: case SLM_GGUF_FLOAT32: return 4;
    default: return 8;
    }
}

static uint64_t walk_value(const slm_gguf_value *v, int depth) {
    uint64_t h = v->type;
    if (v->type == SLM_GGUF_STRING) {
        for (uint64_t i = 0; i < v->str.len; i++) h = h * 31 + (uint8_t)v->str.ptr[i];
    } else if (v->type == SLM_GGUF_ARRAY) {
        if (v->arr.type == SLM_GGUF_STRING || v->arr.type == SLM_GGUF_ARRAY) {
            CHECK(v->arr.n == 0 || v->arr.items != NULL, "array items missing");
            CHECK(depth < SLM_GGUF_MAX_NESTING, "nesting %d", depth);
            for (uint64_t i = 0; i < v->arr.n; i++) h += walk_value(&v->arr.items[i], depth + 1);
        } else {
            size_t sz = elem_bytes(v->arr.type);
            for (uint64_t i = 0; i < v->arr.n * sz; i++) h = h * 31 + v->arr.raw[i];
        }
    } else {
        h += v->u64;
    }
    return h;
}

static uint64_t walk(const slm_gguf *g) {
    uint64_t h = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        for (uint64_t j = 0; j < g->kv[i].key.len; j++) h = h * 31 + (uint8_t)g->kv[i].key.ptr[j];
        h += walk_value(&g->kv[i].value, 0);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        const uint8_t *d = t->data;
        CHECK(d >= g->buf && d + t->nbytes <= g->buf + g->size, "tensor %llu outside the file",
              (unsigned long long)i);
        if (t->nbytes) h += d[0] + d[t->nbytes - 1];
    }
    return h;
}

/* ---- the valid file ------------------------------------------------------------------ */

static void test_valid(const wbuf *b, const layout *L) {
    slm_gguf *g = NULL;
    slm_status s = slm_gguf_parse(b->p, b->n, &g);
    CHECK(s == SLM_OK, "valid file: %s", slm_last_error());
    if (s) return;
    CHECK(g->version == 3, "version %u", g->version);
    CHECK(g->n_kv == N_KV, "n_kv %llu", (unsigned long long)g->n_kv);
    CHECK(g->n_tensors == N_TENSORS, "n_tensors");
    CHECK(g->alignment == VALID_ALIGN, "alignment %zu", g->alignment);
    CHECK(g->data_offset == L->data_offset, "data_offset %zu vs %zu", g->data_offset, L->data_offset);
    CHECK(g->buf == b->p && g->size == b->n && g->map == NULL, "buffer borrowed");

    uint32_t u;
    float f;
    bool bo;
    slm_gguf_str str;
    const slm_gguf_value *v;
    CHECK(slm_gguf_get_str(g, "general.architecture", &str) == SLM_OK && slm_gguf_str_eq(str, "llama"), "arch");
    CHECK(slm_gguf_get_u32(g, "test.u8", &u) == SLM_OK && u == 200, "u8");
    CHECK(slm_gguf_get_u32(g, "test.u16", &u) == SLM_OK && u == 60000, "u16");
    CHECK(slm_gguf_get_u32(g, "test.u32", &u) == SLM_OK && u == 4000000000u, "u32");
    CHECK(slm_gguf_get_u32(g, "test.i32pos", &u) == SLM_OK && u == 7, "u32 from a positive int32");
    CHECK(slm_gguf_get_u32(g, "test.i8", &u) == SLM_ERR_FORMAT && strstr(slm_last_error(), "test.i8"),
          "negative int8 is not a u32: %s", slm_last_error());
    CHECK(slm_gguf_get_u32(g, "test.u64", &u) == SLM_ERR_FORMAT, "2^40 is not a u32");
    CHECK(slm_gguf_get_u32(g, "test.str", &u) == SLM_ERR_FORMAT && strstr(slm_last_error(), "string"),
          "string is not a u32: %s", slm_last_error());
    CHECK(slm_gguf_get_u32(g, "test.f32", &u) == SLM_ERR_FORMAT, "float is not a u32");
    CHECK(slm_gguf_get_u32(g, "no.such.key", &u) == SLM_ERR_NOT_FOUND, "missing key");
    CHECK(slm_gguf_get_f32(g, "test.f32", &f) == SLM_OK && f == 1.5f, "f32");
    CHECK(slm_gguf_get_f32(g, "test.f64", &f) == SLM_OK && f == 3.25f, "f64 as f32");
    CHECK(slm_gguf_get_f32(g, "test.i16", &f) == SLM_OK && f == -30000.0f, "i16 as f32");
    CHECK(slm_gguf_get_f32(g, "test.bool", &f) == SLM_ERR_FORMAT, "bool is not a float");
    CHECK(slm_gguf_get_bool(g, "test.bool", &bo) == SLM_OK && bo, "bool");
    CHECK(slm_gguf_get_bool(g, "test.u8", &bo) == SLM_ERR_FORMAT, "u8 is not a bool");
    CHECK(slm_gguf_get_str(g, "test.str", &str) == SLM_OK && slm_gguf_str_eq(str, "hello"), "str");
    CHECK(slm_gguf_get_str(g, "test.u8", &str) == SLM_ERR_FORMAT, "u8 is not a string");
    char small[4];
    CHECK(strcmp(slm_gguf_str_copy(str, small, sizeof small), "hel") == 0, "str_copy truncates");

    v = slm_gguf_find(g, "test.i8");
    CHECK(v && v->type == SLM_GGUF_INT8 && v->i64 == -5, "i8");
    v = slm_gguf_find(g, "test.i16");
    CHECK(v && v->type == SLM_GGUF_INT16 && v->i64 == -30000, "i16");
    v = slm_gguf_find(g, "test.i32");
    CHECK(v && v->type == SLM_GGUF_INT32 && v->i64 == -2000000000, "i32");
    v = slm_gguf_find(g, "test.u64");
    CHECK(v && v->type == SLM_GGUF_UINT64 && v->u64 == 1ull << 40, "u64");
    v = slm_gguf_find(g, "test.i64");
    CHECK(v && v->type == SLM_GGUF_INT64 && v->i64 == -(1ll << 40), "i64");
    v = slm_gguf_find(g, "test.f64");
    CHECK(v && v->type == SLM_GGUF_FLOAT64 && v->f64 == 3.25, "f64");

    CHECK(slm_gguf_get_arr(g, "test.arr_i32", SLM_GGUF_INT32, &v) == SLM_OK && v->arr.n == 3 && !v->arr.items,
          "arr_i32");
    if (v && v->type == SLM_GGUF_ARRAY && v->arr.n == 3) {
        int32_t x[3];
        memcpy(x, v->arr.raw, sizeof x);
        CHECK(x[0] == 1 && x[1] == -2 && x[2] == 3, "arr_i32 values");
    }
    CHECK(slm_gguf_get_arr(g, "test.arr_i32", SLM_GGUF_UINT32, &v) == SLM_ERR_FORMAT &&
              strstr(slm_last_error(), "int32"),
          "array of the wrong element type: %s", slm_last_error());
    CHECK(slm_gguf_get_arr(g, "test.str", SLM_GGUF_STRING, &v) == SLM_ERR_FORMAT, "a string is not an array");
    v = NULL;
    CHECK(slm_gguf_get_arr(g, "test.arr_str", SLM_GGUF_STRING, &v) == SLM_OK && v->arr.n == 3 && v->arr.items,
          "arr_str");
    if (v && v->arr.items) {
        CHECK(v->arr.items[0].type == SLM_GGUF_STRING && slm_gguf_str_eq(v->arr.items[0].str, "a"), "arr_str[0]");
        CHECK(slm_gguf_str_eq(v->arr.items[1].str, "bc"), "arr_str[1]");
        CHECK(slm_gguf_str_eq(v->arr.items[2].str, ""), "arr_str[2]");
    }
    v = NULL;
    CHECK(slm_gguf_get_arr(g, "test.arr_nested", SLM_GGUF_ARRAY, &v) == SLM_OK && v->arr.n == 3, "arr_nested");
    if (v && v->arr.items) {
        const slm_gguf_value *a = &v->arr.items[0], *c = &v->arr.items[1], *d = &v->arr.items[2];
        uint16_t x[2];
        CHECK(a->type == SLM_GGUF_ARRAY && a->arr.type == SLM_GGUF_UINT16 && a->arr.n == 2, "nested[0]");
        memcpy(x, a->arr.raw, sizeof x);
        CHECK(x[0] == 1 && x[1] == 2, "nested[0] values");
        CHECK(c->arr.type == SLM_GGUF_UINT16 && c->arr.n == 1 && c->arr.raw[0] == 3, "nested[1]");
        CHECK(d->arr.type == SLM_GGUF_ARRAY && d->arr.n == 1 && d->arr.items &&
                  d->arr.items[0].arr.type == SLM_GGUF_STRING && d->arr.items[0].arr.n == 1 &&
                  slm_gguf_str_eq(d->arr.items[0].arr.items[0].str, "x"),
              "nested[2][0][0] == \"x\"");
    }
    CHECK(slm_gguf_get_arr(g, "test.arr_empty", SLM_GGUF_FLOAT32, &v) == SLM_OK && v->arr.n == 0, "empty array");
    CHECK(slm_gguf_get_arr(g, "test.arr_bool", SLM_GGUF_BOOL, &v) == SLM_OK && v->arr.n == 2 &&
              v->arr.raw[0] == 1 && v->arr.raw[1] == 0,
          "bool array");
    CHECK(slm_gguf_get_arr(g, "test.arr_f64", SLM_GGUF_FLOAT64, &v) == SLM_OK && v->arr.n == 2, "f64 array");
    if (v && v->arr.n == 2) {
        double x[2];
        memcpy(x, v->arr.raw, sizeof x);
        CHECK(x[0] == -0.5 && x[1] == 1e300, "f64 array values");
    }

    for (int t = 0; t < N_TENSORS; t++) {
        const slm_gguf_tensor *T = slm_gguf_find_tensor(g, tensor_names[t]);
        CHECK(T != NULL, "tensor %s", tensor_names[t]);
        if (!T) continue;
        CHECK(T == &g->tensors[t], "tensor order");
        CHECK(T->type == tensor_types[t] && T->n_dims == tensor_ndims[t], "tensor %s type/n_dims", tensor_names[t]);
        for (int d = 0; d < 4; d++) CHECK(T->ne[d] == tensor_dims[t][d], "tensor %s ne[%d]", tensor_names[t], d);
        CHECK(T->offset == L->toff[t] && T->nbytes == tensor_bytes[t], "tensor %s offset/nbytes", tensor_names[t]);
        CHECK(T->data == b->p + L->data_offset + L->toff[t], "tensor %s data pointer", tensor_names[t]);
        const uint8_t *d = T->data;
        CHECK(d[0] == (uint8_t)(t * 31) && d[T->nbytes - 1] == (uint8_t)(t * 31 + T->nbytes - 1), "tensor %s bytes",
              tensor_names[t]);
    }
    CHECK(slm_gguf_find_tensor(g, "blk.0") == NULL, "prefix of a name is not a match");
    CHECK(slm_gguf_find(g, "test") == NULL, "prefix of a key is not a match");
    CHECK(strcmp(slm_gguf_vtype_name(SLM_GGUF_FLOAT64), "float64") == 0 &&
              strcmp(slm_gguf_vtype_name(99), "unknown") == 0,
          "vtype names");
    walk(g);
    slm_gguf_free(g);
    slm_gguf_free(NULL);

    /* Version 2 has the same layout. */
    uint8_t *c = malloc(b->n);
    memcpy(c, b->p, b->n);
    patch(c, L->version, 2, 4);
    s = slm_gguf_parse(c, b->n, &g);
    CHECK(s == SLM_OK && g->version == 2, "version 2: %s", slm_last_error());
    slm_gguf_free(g);
    free(c);
}

/* ---- one corrupt file per rule ------------------------------------------------------- */

/* Parses buf[0..n) from an exact-size copy (so ASan sees any overread); expects a format
 * error whose message contains `want`. */
static void expect_format(const char *what, const uint8_t *buf, size_t n, const char *want) {
    uint8_t *c = malloc(n ? n : 1);
    if (n) memcpy(c, buf, n);
    slm_gguf *g = (slm_gguf *)1;
    slm_status s = slm_gguf_parse(c, n, &g);
    const char *msg = slm_last_error();
    CHECK(s == SLM_ERR_FORMAT, "%s: status %s (%s)", what, slm_status_name(s), msg);
    CHECK(g == NULL, "%s: *out not NULL on error", what);
    CHECK(msg[0] != '\0' && strchr(msg, '\n') == NULL, "%s: message empty or not one line", what);
    CHECK(strncmp(msg, "gguf: ", 6) == 0, "%s: message '%s' does not start with 'gguf: '", what, msg);
    CHECK(!want || strstr(msg, want), "%s: message '%s' lacks '%s'", what, msg, want);
    printf("  %-44s -> %s\n", what, msg);
    if (s == SLM_OK) slm_gguf_free(g);
    free(c);
}

/* Copy of the valid file with `bytes` bytes at `at` set to v. */
static void expect_patched(const char *what, const wbuf *b, size_t at, uint64_t v, int bytes, const char *want) {
    uint8_t *c = malloc(b->n);
    memcpy(c, b->p, b->n);
    patch(c, at, v, bytes);
    expect_format(what, c, b->n, want);
    free(c);
}

/* A file with one kv of n nested arrays around a u8 array. */
static void build_nested(wbuf *w, int levels) {
    header(w, 3, 0, 1);
    kv_head(w, "deep", SLM_GGUF_ARRAY);
    for (int i = 1; i < levels; i++) arr_head(w, SLM_GGUF_ARRAY, 1);
    arr_head(w, SLM_GGUF_UINT8, 1);
    put_u8(w, 42);
}

/* A file with one tensor info and the given fields, data section of `data` bytes. */
static void build_one_tensor(wbuf *w, uint32_t n_dims, const uint64_t *dims, uint32_t type, uint64_t off,
                             size_t data) {
    header(w, 3, 1, 0);
    put_str(w, "t");
    put_u32(w, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) put_u64(w, dims[d]);
    put_u32(w, type);
    put_u64(w, off);
    pad_to(w, 32);
    for (size_t i = 0; i < data; i++) put_u8(w, 0);
}

static void test_corrupt(const wbuf *b, const layout *L) {
    expect_format("empty buffer", b->p, 0, "empty");
    expect_format("3 bytes", b->p, 3, NULL);
    expect_patched("bad magic", b, 0, 0x46554746, 4, "bad magic");
    expect_patched("version 1", b, L->version, 1, 4, "version 1");
    expect_patched("version 0", b, L->version, 0, 4, "unsupported version");
    expect_patched("version 4", b, L->version, 4, 4, "unsupported version");
    expect_patched("big-endian version", b, L->version, 0x03000000, 4, "big-endian");
    expect_patched("n_kv huge", b, L->n_kv, 1ull << 60, 8, "n_kv");
    expect_patched("n_kv all ones", b, L->n_kv, UINT64_MAX, 8, "n_kv");
    expect_patched("n_kv one too many", b, L->n_kv, N_KV + 1, 8, NULL);
    expect_patched("n_tensors huge", b, L->n_tensors, 1ull << 58, 8, "n_tensors");
    expect_patched("n_tensors all ones", b, L->n_tensors, UINT64_MAX, 8, "n_tensors");
    expect_patched("n_tensors one too many", b, L->n_tensors, N_TENSORS + 1, 8, NULL);
    expect_patched("key length huge", b, L->key_u8, 1ull << 62, 8, "key length");
    expect_patched("key length past end", b, L->key_u8, b->n, 8, "key length");
    expect_patched("empty key", b, L->key_u8, 0, 8, NULL);
    expect_patched("string length past end", b, L->str_len, b->n - L->str_len - 8 + 1, 8, "string length");
    expect_patched("string length huge", b, L->str_len, UINT64_MAX, 8, "string length");
    expect_patched("array length huge", b, L->arr_len, 1ull << 61, 8, "array length");
    expect_patched("array length all ones", b, L->arr_len, UINT64_MAX, 8, "array length");
    expect_patched("unknown value type", b, L->vtype_u16, SLM_GGUF_VTYPE_COUNT, 4, "unknown value type");
    expect_patched("value type huge", b, L->vtype_u16, 0xffffffffu, 4, "unknown value type");
    expect_patched("unknown array element type", b, L->arr_etype, 99, 4, "unknown array element type");
    expect_patched("bool 2", b, L->bool_val, 2, 1, "bool value 2");
    expect_patched("bool array element 255", b, L->bool_arr_elem, 255, 1, "bool value 255");
    expect_patched("alignment 0", b, L->align_val, 0, 4, "power of two");
    expect_patched("alignment 48", b, L->align_val, 48, 4, "power of two");
    expect_patched("alignment of type int32", b, L->align_type, SLM_GGUF_INT32, 4, "general.alignment has type");
    expect_patched("alignment of type float32", b, L->align_type, SLM_GGUF_FLOAT32, 4, "general.alignment");
    expect_patched("n_dims 0", b, L->n_dims[0], 0, 4, "n_dims 0");
    expect_patched("n_dims 5", b, L->n_dims[0], 5, 4, "n_dims 5");
    expect_patched("negative dim", b, L->dim[1][0], (uint64_t)-32, 8, "negative");
    expect_patched("dim product overflows", b, L->dim[0][1], 1ull << 62, 8, "overflows");
    expect_patched("unknown tensor type", b, L->type[0], 1000, 4, "unknown tensor type");
    expect_patched("retired tensor type 4", b, L->type[0], 4, 4, "unknown tensor type");
    expect_patched("ne[0] not a multiple of 32", b, L->dim[2][0], 48, 8, "block size");
    expect_patched("offset unaligned", b, L->offset[1], L->toff[1] + 4, 8, "alignment");
    expect_patched("offset past end", b, L->offset[1], 1ull << 40, 8, "past end of file");
    expect_patched("offset near 2^64", b, L->offset[1], UINT64_MAX - VALID_ALIGN + 1, 8, "overflows");
    expect_patched("offset + size past end", b, L->offset[3], L->toff[3] + VALID_ALIGN, 8, "past end of file");
    expect_patched("overlapping tensors", b, L->offset[2], L->toff[1], 8, "overlaps");
    expect_patched("overlapping tensors, first", b, L->offset[0], L->toff[2], 8, "overlaps");
    expect_patched("duplicate key", b, L->key_i8 + 8 + 5, 'u', 1, "duplicate metadata key 'test.u8'");
    expect_patched("duplicate tensor name", b, L->name[3] + 8 + 6, 'a', 1, "duplicate tensor name 'blk.0.a'");
    expect_patched("empty tensor name", b, L->name[0], 0, 8, NULL);

    /* Tensor byte size overflows size_t although the element count fits in int64. */
    wbuf w = {0};
    uint64_t dims[4] = {1ull << 62, 1, 1, 1};
    build_one_tensor(&w, 1, dims, SLM_DT_F32, 0, 64);
    expect_format("byte size overflows", w.p, w.n, "overflows");
    w.n = 0;
    dims[0] = 1ull << 32;
    dims[1] = 1ull << 32;
    build_one_tensor(&w, 2, dims, SLM_DT_F32, 0, 64);
    expect_format("element count overflows", w.p, w.n, "element count overflows");
    w.n = 0;
    dims[0] = 0;
    dims[1] = 1ull << 40;
    dims[2] = 1ull << 40;
    build_one_tensor(&w, 3, dims, SLM_DT_F32, 0, 64);
    expect_format("product of non-zero dims overflows beside a zero dim", w.p, w.n, "overflows");
    w.n = 0;
    dims[0] = 32;
    dims[1] = 0;
    build_one_tensor(&w, 2, dims, SLM_DT_Q4_1, 0, 0);
    slm_gguf *g = NULL;
    CHECK(slm_gguf_parse(w.p, w.n, &g) == SLM_OK && g->tensors[0].nbytes == 0, "zero-element tensor: %s",
          slm_last_error());
    slm_gguf_free(g);
    w.n = 0;
    dims[0] = 32;
    build_one_tensor(&w, 1, dims, SLM_DT_F32, 0, 127);
    expect_format("tensor one byte short", w.p, w.n, "past end of file");
    w.n = 0;
    build_one_tensor(&w, 1, dims, SLM_DT_F32, 0, 128);
    CHECK(slm_gguf_parse(w.p, w.n, &g) == SLM_OK && g->tensors[0].nbytes == 128, "tensor exactly at end: %s",
          slm_last_error());
    slm_gguf_free(g);

    /* Nesting: SLM_GGUF_MAX_NESTING levels parse, one more does not. */
    w.n = 0;
    build_nested(&w, SLM_GGUF_MAX_NESTING);
    g = NULL;
    CHECK(slm_gguf_parse(w.p, w.n, &g) == SLM_OK, "nesting %d: %s", SLM_GGUF_MAX_NESTING, slm_last_error());
    if (g) {
        const slm_gguf_value *v = &g->kv[0].value;
        int levels = 0;
        while (v->type == SLM_GGUF_ARRAY && v->arr.type == SLM_GGUF_ARRAY) v = &v->arr.items[0], levels++;
        CHECK(levels + 1 == SLM_GGUF_MAX_NESTING && v->arr.raw[0] == 42, "nested value");
    }
    slm_gguf_free(g);
    w.n = 0;
    build_nested(&w, SLM_GGUF_MAX_NESTING + 1);
    expect_format("nesting too deep", w.p, w.n, "nested deeper");
    w.n = 0;
    build_nested(&w, 1000);
    expect_format("nesting 1000 deep", w.p, w.n, "nested deeper");

    /* An array of 2^40 strings in a small file; an array of arrays claiming 2^60 elements. */
    w.n = 0;
    header(&w, 3, 0, 1);
    kv_head(&w, "strings", SLM_GGUF_ARRAY);
    arr_head(&w, SLM_GGUF_STRING, 1ull << 40);
    for (int i = 0; i < 100; i++) put_str(&w, "s");
    expect_format("string array count huge", w.p, w.n, "array length");
    w.n = 0;
    header(&w, 3, 0, 1);
    kv_head(&w, "arrays", SLM_GGUF_ARRAY);
    arr_head(&w, SLM_GGUF_ARRAY, 1ull << 60);
    expect_format("array of arrays count huge", w.p, w.n, "array length");
    /* 12 empty arrays need exactly 12 * 12 bytes: one byte fewer fails. */
    w.n = 0;
    header(&w, 3, 0, 1);
    kv_head(&w, "arrays", SLM_GGUF_ARRAY);
    arr_head(&w, SLM_GGUF_ARRAY, 12);
    for (int i = 0; i < 12; i++) arr_head(&w, SLM_GGUF_UINT32, 0);
    CHECK(slm_gguf_parse(w.p, w.n, &g) == SLM_OK && g->kv[0].value.arr.n == 12, "12 empty arrays: %s",
          slm_last_error());
    slm_gguf_free(g);
    expect_format("12 empty arrays, truncated", w.p, w.n - 1, NULL);

    /* float64 values: out of float32 range is an error for get_f32, infinity is not. */
    w.n = 0;
    header(&w, 3, 0, 2);
    kv_head(&w, "big", SLM_GGUF_FLOAT64);
    put_f64(&w, 1e300);
    kv_head(&w, "inf", SLM_GGUF_FLOAT64);
    put_f64(&w, -INFINITY);
    CHECK(slm_gguf_parse(w.p, w.n, &g) == SLM_OK, "float64 file: %s", slm_last_error());
    if (g) {
        float f = 0;
        CHECK(slm_gguf_get_f32(g, "big", &f) == SLM_ERR_FORMAT && strstr(slm_last_error(), "big"), "1e300: %s",
              slm_last_error());
        CHECK(slm_gguf_get_f32(g, "inf", &f) == SLM_OK && isinf(f) && f < 0, "-inf");
    }
    slm_gguf_free(g);

    /* A metadata-only file may end right after its header (no padding). */
    w.n = 0;
    header(&w, 3, 0, 1);
    kv_head(&w, "k", SLM_GGUF_UINT8);
    put_u8(&w, 1);
    CHECK(slm_gguf_parse(w.p, w.n, &g) == SLM_OK && g->n_tensors == 0 && g->data_offset <= w.n,
          "metadata-only file: %s", slm_last_error());
    slm_gguf_free(g);
    free(w.p);
}

/* Every proper prefix of the valid file is rejected. */
static void test_truncation(const wbuf *b) {
    int bad = 0;
    for (size_t n = 0; n < b->n; n++) {
        uint8_t *c = malloc(n ? n : 1);
        memcpy(c, b->p, n);
        slm_gguf *g = NULL;
        slm_status s = slm_gguf_parse(c, n, &g);
        if (s != SLM_ERR_FORMAT || g || !slm_last_error()[0]) {
            if (bad++ < 5) CHECK(0, "truncated at %zu: status %s (%s)", n, slm_status_name(s), slm_last_error());
            slm_gguf_free(g);
        }
        free(c);
    }
    CHECK(bad == 0, "%d of %zu truncations accepted", bad, b->n);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* 2000 copies with 1..8 random bit flips parse or fail cleanly. */
static void test_bit_flips(const wbuf *b) {
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int ok = 0, failed = 0, bad = 0;
    for (int iter = 0; iter < 2000; iter++) {
        uint8_t *c = malloc(b->n);
        memcpy(c, b->p, b->n);
        int flips = 1 + (int)(rng_next(&seed) % 8);
        for (int k = 0; k < flips; k++) {
            uint64_t r = rng_next(&seed);
            c[(r >> 3) % b->n] ^= (uint8_t)(1u << (r & 7));
        }
        slm_gguf *g = NULL;
        slm_status s = slm_gguf_parse(c, b->n, &g);
        if (s == SLM_OK) {
            ok++;
            walk(g);
            slm_gguf_free(g);
        } else if (s == SLM_ERR_FORMAT && !g && slm_last_error()[0]) {
            failed++;
        } else if (bad++ < 5) {
            CHECK(0, "bit flips #%d: status %s (%s)", iter, slm_status_name(s), slm_last_error());
        }
        free(c);
    }
    CHECK(bad == 0 && ok + failed == 2000, "bit flips: %d bad", bad);
    CHECK(ok > 0 && failed > 0, "bit flips: %d parsed, %d rejected (expected some of both)", ok, failed);
    printf("bit flips: %d parsed, %d rejected\n", ok, failed);
}

/* ---- files on disk ------------------------------------------------------------------- */

static void test_open(const wbuf *b) {
    slm_gguf *g = (slm_gguf *)1;
    CHECK(slm_gguf_open("/nonexistent/dir/model.gguf", &g) == SLM_ERR_IO && g == NULL &&
              strstr(slm_last_error(), "/nonexistent/dir/model.gguf"),
          "missing file: %s", slm_last_error());
    CHECK(slm_gguf_open("/tmp", &g) == SLM_ERR_IO && strstr(slm_last_error(), "directory"), "directory: %s",
          slm_last_error());
    char path[] = "/tmp/test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    CHECK(slm_gguf_open(path, &g) == SLM_ERR_FORMAT && strstr(slm_last_error(), "empty"), "empty file: %s",
          slm_last_error());
    CHECK(write(fd, b->p, b->n) == (ssize_t)b->n, "write");
    close(fd);
    slm_status s = slm_gguf_open(path, &g);
    CHECK(s == SLM_OK && g->map && g->buf == g->map && g->size == b->n && g->n_tensors == N_TENSORS,
          "open valid file: %s", slm_last_error());
    if (!s) walk(g);
    slm_gguf_free(g);
    /* A corrupt file's message names the path. */
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(write(fd, b->p, 100) == 100, "write");
    close(fd);
    CHECK(slm_gguf_open(path, &g) == SLM_ERR_FORMAT && strstr(slm_last_error(), path) &&
              strstr(slm_last_error(), "gguf: "),
          "truncated file: %s", slm_last_error());
    unlink(path);
    CHECK(slm_gguf_parse(NULL, 10, &g) == SLM_ERR_ARG, "NULL buffer");
}

/* Every file in the fuzz seed corpus parses (they are written by an independent writer). */
static void test_corpus(void) {
    const char *dir = "tests/data/gguf-corpus";
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot open %s (run from the repository root)", dir);
    if (!d) return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        slm_gguf *g = NULL;
        slm_status s = slm_gguf_open(path, &g);
        CHECK(s == SLM_OK, "seed %s: %s", path, slm_last_error());
        if (!s) walk(g);
        if (!s && strcmp(e->d_name, "every_type.gguf") == 0) {
            /* Values written by the gguf package read back: [[1, 2], [3], [[4], [5, 6]]]. */
            const slm_gguf_value *v = NULL;
            int64_t i = 0;
            uint32_t u = 0;
            CHECK(slm_gguf_get_arr(g, "t.arr_nested", SLM_GGUF_ARRAY, &v) == SLM_OK && v->arr.n == 3 &&
                      v->arr.items[2].arr.type == SLM_GGUF_ARRAY && v->arr.items[2].arr.n == 2 &&
                      v->arr.items[2].arr.items[1].arr.n == 2,
                  "every_type: t.arr_nested: %s", slm_last_error());
            v = slm_gguf_find(g, "t.i64");
            if (v) i = v->i64;
            CHECK(v && v->type == SLM_GGUF_INT64 && i == -(1ll << 60), "every_type: t.i64");
            CHECK(slm_gguf_get_u32(g, "t.u32", &u) == SLM_OK && u == 4000000000u, "every_type: t.u32");
            slm_gguf_str str;
            CHECK(slm_gguf_get_str(g, "t.str", &str) == SLM_OK && slm_gguf_str_eq(str, "h\xc3\xa9llo"),
                  "every_type: t.str");
        }
        slm_gguf_free(g);
        n++;
    }
    closedir(d);
    CHECK(n >= 3, "only %d seed files in %s", n, dir);
}

static void test_real_model(void) {
    const char *path = test_model_path();
    struct stat st;
    if (stat(path, &st) != 0) {
        CHECK(0, "model %s not found: run scripts/fetch-model.sh", path);
        return;
    }
    slm_gguf *g = NULL;
    slm_status s = slm_gguf_open(path, &g);
    CHECK(s == SLM_OK, "real model: %s", slm_last_error());
    if (s) return;
    CHECK(g->version == 3, "version %u", g->version);
    CHECK(g->n_tensors == 272, "n_tensors %llu", (unsigned long long)g->n_tensors);
    CHECK(g->n_kv == 33, "n_kv %llu", (unsigned long long)g->n_kv);
    CHECK(g->alignment == 32 && g->data_offset % 32 == 0, "alignment %zu", g->alignment);
    slm_gguf_str arch;
    CHECK(slm_gguf_get_str(g, "general.architecture", &arch) == SLM_OK && slm_gguf_str_eq(arch, "llama"), "arch");
    uint32_t u = 0;
    CHECK(slm_gguf_get_u32(g, "llama.block_count", &u) == SLM_OK && u == 30, "block_count %u", u);
    CHECK(slm_gguf_get_u32(g, "llama.embedding_length", &u) == SLM_OK && u == 576, "embedding_length %u", u);
    float f = 0;
    CHECK(slm_gguf_get_f32(g, "llama.rope.freq_base", &f) == SLM_OK && f == 100000.0f, "rope base %g", f);
    slm_gguf_str pre;
    CHECK(slm_gguf_get_str(g, "tokenizer.ggml.pre", &pre) == SLM_OK && slm_gguf_str_eq(pre, "smollm"), "pre");
    const slm_gguf_tensor *t = slm_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->type == SLM_DT_Q8_0 && t->n_dims == 2 && t->ne[0] == 576 && t->ne[1] == 49152 &&
              t->nbytes == (size_t)576 / 32 * 34 * 49152,
          "token_embd.weight");
    const slm_gguf_value *v = NULL;
    CHECK(slm_gguf_get_arr(g, "tokenizer.ggml.tokens", SLM_GGUF_STRING, &v) == SLM_OK && v->arr.n == 49152 &&
              v->arr.items,
          "tokens: %s", slm_last_error());
    if (v && v->arr.items) CHECK(v->arr.items[0].str.len > 0, "token 0 non-empty");
    CHECK(slm_gguf_get_arr(g, "tokenizer.ggml.token_type", SLM_GGUF_INT32, &v) == SLM_OK && v->arr.n == 49152,
          "token_type");
    int outside = 0, q41 = 0, q80 = 0, f32 = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *T = &g->tensors[i];
        const uint8_t *d = T->data;
        if (d < g->buf + g->data_offset || d + T->nbytes > g->buf + g->size) outside++;
        q41 += T->type == SLM_DT_Q4_1;
        q80 += T->type == SLM_DT_Q8_0;
        f32 += T->type == SLM_DT_F32;
    }
    CHECK(outside == 0, "%d tensors outside the file", outside);
    CHECK(q41 == 210 && q80 == 1 && f32 == 61, "types: %d q4_1, %d q8_0, %d f32", q41, q80, f32);
    walk(g);
    slm_gguf_free(g);
}

int main(void) {
    wbuf b = {0};
    layout L;
    build_valid(&b, &L);
    test_valid(&b, &L);
    test_corrupt(&b, &L);
    test_truncation(&b);
    test_bit_flips(&b);
    test_open(&b);
    test_corpus();
    test_real_model();
    free(b.p);
    return test_summary("test_gguf");
}
