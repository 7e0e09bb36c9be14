/* test_gguf_write.c - GGUF writer: every value type round-trips, tensors of several dtypes,
 * copying a file's metadata, alignment, determinism, and atomicity under write failures. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/gguf.h"
#include "core/gguf_write.h"
#include "test.h"

static char g_dir[256];

static const char *path_in(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* Number of directory entries other than . and .. */
static int dir_entries(void) {
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(p, 1, (size_t)len, f);
    fclose(f);
    return p;
}

/* Deep equality of two values (as the reader represents them). */
static bool value_eq(const slm_gguf_value *a, const slm_gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case SLM_GGUF_STRING:
        return a->str.len == b->str.len && (a->str.len == 0 || !memcmp(a->str.ptr, b->str.ptr, a->str.len));
    case SLM_GGUF_FLOAT32:
    case SLM_GGUF_FLOAT64: return !memcmp(&a->f64, &b->f64, sizeof a->f64);
    case SLM_GGUF_BOOL: return a->b == b->b;
    case SLM_GGUF_INT8: case SLM_GGUF_INT16: case SLM_GGUF_INT32: case SLM_GGUF_INT64: return a->i64 == b->i64;
    case SLM_GGUF_ARRAY: {
        if (a->arr.type != b->arr.type || a->arr.n != b->arr.n) return false;
        if (a->arr.type == SLM_GGUF_STRING || a->arr.type == SLM_GGUF_ARRAY) {
            for (uint64_t i = 0; i < a->arr.n; i++)
                if (!value_eq(&a->arr.items[i], &b->arr.items[i])) return false;
            return true;
        }
        static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        return a->arr.n == 0 || !memcmp(a->arr.raw, b->arr.raw, a->arr.n * sz[a->arr.type]);
    }
    default: return a->u64 == b->u64;
    }
}

/* ---- the test model -------------------------------------------------------------------- */

static const uint8_t u8s[] = {1, 2, 255};
static const uint8_t bools[] = {1, 0, 1, 1};
static int32_t i32s[] = {-7, 0, 2147483647};
static uint8_t i32s_le[12];
static double f64s_le_src[] = {1.5, -2.25e300};
static uint8_t f64s_le[16];

static slm_gguf_value strs[3], inner[2], inner_str_items[2], nested[2], deep_leaf, deep_mid;

static float f32_data[8 * 3];
static uint16_t f16_data[16];
static uint8_t q8_data[2 * 2 * 34];
static uint8_t q41_data[3 * 20];

static void build_values(void) {
    for (int i = 0; i < 3; i++) {
        uint32_t v = (uint32_t)i32s[i];
        for (int b = 0; b < 4; b++) i32s_le[4 * i + b] = (uint8_t)(v >> (8 * b));
    }
    memcpy(f64s_le, f64s_le_src, sizeof f64s_le); /* little-endian host */
    const char *s[3] = {"alpha", "", "gamma \xce\xb3"};
    for (int i = 0; i < 3; i++) strs[i] = (slm_gguf_value){.type = SLM_GGUF_STRING, .str = {strlen(s[i]), s[i]}};
    /* nested: array of arrays: [[-7, 0, 2147483647], ["x", "yz"]] is not allowed (one element
     * type per array), so: [[i32 x3], [i32 x0]] and a string-array-of-arrays separately. */
    inner[0] = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_INT32, 3, i32s_le, NULL}};
    inner[1] = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_INT32, 0, i32s_le, NULL}};
    inner_str_items[0] = strs[0];
    inner_str_items[1] = strs[2];
    nested[0] = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_STRING, 2, NULL, inner_str_items}};
    nested[1] = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_STRING, 0, NULL, NULL}};
    deep_leaf = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_ARRAY, 2, NULL, inner}};
    deep_mid = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_ARRAY, 1, NULL, &deep_leaf}};

    for (int i = 0; i < 24; i++) f32_data[i] = (float)i * 0.25f - 3.0f;
    for (int i = 0; i < 16; i++) f16_data[i] = slm_f32_to_f16((float)i / 7.0f);
    float src[128];
    for (int i = 0; i < 128; i++) src[i] = (float)((i * 37) % 19) / 9.0f - 1.0f;
    slm_dtype_get(SLM_DT_Q8_0)->from_float(src, q8_data, 128);
    slm_dtype_get(SLM_DT_Q4_1)->from_float(src, q41_data, 96);
}

static slm_gguf_writer *build_writer(uint32_t alignment) {
    slm_gguf_writer *w;
    CHECK(slm_gguf_writer_create(&w) == SLM_OK, "create");
    CHECK(slm_gguf_writer_set_str(w, "general.architecture", "test") == SLM_OK, "str");
    if (alignment) slm_gguf_writer_set_u32(w, "general.alignment", alignment);
    slm_gguf_value v;
    v = (slm_gguf_value){.type = SLM_GGUF_UINT8, .u64 = 200}; slm_gguf_writer_set(w, "t.u8", &v);
    v = (slm_gguf_value){.type = SLM_GGUF_INT8, .i64 = -100}; slm_gguf_writer_set(w, "t.i8", &v);
    v = (slm_gguf_value){.type = SLM_GGUF_UINT16, .u64 = 65535}; slm_gguf_writer_set(w, "t.u16", &v);
    v = (slm_gguf_value){.type = SLM_GGUF_INT16, .i64 = -32768}; slm_gguf_writer_set(w, "t.i16", &v);
    slm_gguf_writer_set_u32(w, "t.u32", 4000000000u);
    slm_gguf_writer_set_i32(w, "t.i32", -2000000000);
    slm_gguf_writer_set_f32(w, "t.f32", 0.1f);
    slm_gguf_writer_set_bool(w, "t.bool", true);
    slm_gguf_writer_set_u64(w, "t.u64", UINT64_MAX);
    v = (slm_gguf_value){.type = SLM_GGUF_INT64, .i64 = INT64_MIN}; slm_gguf_writer_set(w, "t.i64", &v);
    v = (slm_gguf_value){.type = SLM_GGUF_FLOAT64, .f64 = -1e-300}; slm_gguf_writer_set(w, "t.f64", &v);
    v = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_UINT8, 3, u8s, NULL}};
    slm_gguf_writer_set(w, "t.arr.u8", &v);
    v = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_BOOL, 4, bools, NULL}};
    slm_gguf_writer_set(w, "t.arr.bool", &v);
    v = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_INT32, 3, i32s_le, NULL}};
    slm_gguf_writer_set(w, "t.arr.i32", &v);
    v = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_FLOAT64, 2, f64s_le, NULL}};
    slm_gguf_writer_set(w, "t.arr.f64", &v);
    v = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_STRING, 3, NULL, strs}};
    slm_gguf_writer_set(w, "t.arr.str", &v);
    v = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_ARRAY, 2, NULL, nested}};
    slm_gguf_writer_set(w, "t.arr.arr.str", &v);
    slm_gguf_writer_set(w, "t.arr.arr.arr.i32", &deep_mid);
    v = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_FLOAT32, 0, NULL, NULL}};
    slm_gguf_writer_set(w, "t.arr.empty", &v);
    /* replacing keeps the position and the count */
    slm_gguf_writer_set_str(w, "t.replaced", "old");
    slm_gguf_writer_set_str(w, "t.replaced", "new");

    int64_t ne_f32[] = {8, 3}, ne_f16[] = {16}, ne_q8[] = {64, 2}, ne_q41[] = {32, 3}, ne_zero[] = {0, 4};
    CHECK(slm_gguf_writer_add_tensor(w, "a.f32", 2, ne_f32, SLM_DT_F32, f32_data, sizeof f32_data) == SLM_OK,
          "%s", slm_last_error());
    CHECK(slm_gguf_writer_add_tensor(w, "b.f16", 1, ne_f16, SLM_DT_F16, f16_data, sizeof f16_data) == SLM_OK,
          "%s", slm_last_error());
    CHECK(slm_gguf_writer_add_tensor(w, "c.q8_0", 2, ne_q8, SLM_DT_Q8_0, q8_data, sizeof q8_data) == SLM_OK,
          "%s", slm_last_error());
    CHECK(slm_gguf_writer_add_tensor(w, "d.q4_1", 2, ne_q41, SLM_DT_Q4_1, q41_data, sizeof q41_data) == SLM_OK,
          "%s", slm_last_error());
    CHECK(slm_gguf_writer_add_tensor(w, "e.empty", 2, ne_zero, SLM_DT_F32, NULL, 0) == SLM_OK, "%s",
          slm_last_error());
    return w;
}

/* Every key/value and tensor of the test model, as read back from path. */
static void check_model(const char *path, size_t want_align) {
    slm_gguf *g;
    slm_status s = slm_gguf_open(path, &g);
    CHECK(s == SLM_OK, "open %s: %s", path, slm_last_error());
    if (s) return;
    CHECK(g->version == 3, "version %u", g->version);
    CHECK(g->alignment == want_align, "alignment %zu", g->alignment);
    CHECK(g->n_kv == 21 + (want_align != 32), "n_kv %llu", (unsigned long long)g->n_kv);
    const slm_gguf_value *v;
    slm_gguf_str str;
    CHECK(slm_gguf_get_str(g, "general.architecture", &str) == SLM_OK && slm_gguf_str_eq(str, "test"), "arch");
    CHECK((v = slm_gguf_find(g, "t.u8")) && v->type == SLM_GGUF_UINT8 && v->u64 == 200, "u8");
    CHECK((v = slm_gguf_find(g, "t.i8")) && v->type == SLM_GGUF_INT8 && v->i64 == -100, "i8");
    CHECK((v = slm_gguf_find(g, "t.u16")) && v->type == SLM_GGUF_UINT16 && v->u64 == 65535, "u16");
    CHECK((v = slm_gguf_find(g, "t.i16")) && v->type == SLM_GGUF_INT16 && v->i64 == -32768, "i16");
    CHECK((v = slm_gguf_find(g, "t.u32")) && v->type == SLM_GGUF_UINT32 && v->u64 == 4000000000u, "u32");
    CHECK((v = slm_gguf_find(g, "t.i32")) && v->type == SLM_GGUF_INT32 && v->i64 == -2000000000, "i32");
    CHECK((v = slm_gguf_find(g, "t.f32")) && v->type == SLM_GGUF_FLOAT32 && (float)v->f64 == 0.1f, "f32");
    CHECK((v = slm_gguf_find(g, "t.bool")) && v->type == SLM_GGUF_BOOL && v->b, "bool");
    CHECK((v = slm_gguf_find(g, "t.u64")) && v->type == SLM_GGUF_UINT64 && v->u64 == UINT64_MAX, "u64");
    CHECK((v = slm_gguf_find(g, "t.i64")) && v->type == SLM_GGUF_INT64 && v->i64 == INT64_MIN, "i64");
    CHECK((v = slm_gguf_find(g, "t.f64")) && v->type == SLM_GGUF_FLOAT64 && v->f64 == -1e-300, "f64");
    slm_gguf_value want;
    want = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_UINT8, 3, u8s, NULL}};
    CHECK((v = slm_gguf_find(g, "t.arr.u8")) && value_eq(v, &want), "arr u8");
    want = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_BOOL, 4, bools, NULL}};
    CHECK((v = slm_gguf_find(g, "t.arr.bool")) && value_eq(v, &want), "arr bool");
    want = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_INT32, 3, i32s_le, NULL}};
    CHECK((v = slm_gguf_find(g, "t.arr.i32")) && value_eq(v, &want), "arr i32");
    want = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_FLOAT64, 2, f64s_le, NULL}};
    CHECK((v = slm_gguf_find(g, "t.arr.f64")) && value_eq(v, &want), "arr f64");
    want = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_STRING, 3, NULL, strs}};
    CHECK((v = slm_gguf_find(g, "t.arr.str")) && value_eq(v, &want), "arr str");
    want = (slm_gguf_value){.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_ARRAY, 2, NULL, nested}};
    CHECK((v = slm_gguf_find(g, "t.arr.arr.str")) && value_eq(v, &want), "arr of arr of str");
    CHECK((v = slm_gguf_find(g, "t.arr.arr.arr.i32")) && value_eq(v, &deep_mid), "3-level nested array");
    CHECK((v = slm_gguf_find(g, "t.arr.empty")) && v->type == SLM_GGUF_ARRAY && v->arr.n == 0 &&
              v->arr.type == SLM_GGUF_FLOAT32, "empty array");
    CHECK(slm_gguf_get_str(g, "t.replaced", &str) == SLM_OK && slm_gguf_str_eq(str, "new"), "replaced value");
    CHECK(slm_gguf_str_eq(g->kv[g->n_kv - 1].key, "t.replaced"), "replaced key keeps its position");

    CHECK(g->n_tensors == 5, "n_tensors %llu", (unsigned long long)g->n_tensors);
    const struct {
        const char *name;
        uint32_t type, n_dims;
        int64_t ne0, ne1;
        const void *data;
        size_t nbytes;
    } want_t[] = {
        {"a.f32", SLM_DT_F32, 2, 8, 3, f32_data, sizeof f32_data},
        {"b.f16", SLM_DT_F16, 1, 16, 1, f16_data, sizeof f16_data},
        {"c.q8_0", SLM_DT_Q8_0, 2, 64, 2, q8_data, sizeof q8_data},
        {"d.q4_1", SLM_DT_Q4_1, 2, 32, 3, q41_data, sizeof q41_data},
        {"e.empty", SLM_DT_F32, 2, 0, 4, NULL, 0},
    };
    for (size_t i = 0; i < 5 && i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        CHECK(slm_gguf_str_eq(t->name, want_t[i].name), "tensor %zu name", i);
        CHECK(t->type == want_t[i].type && t->n_dims == want_t[i].n_dims && t->ne[0] == want_t[i].ne0 &&
                  t->ne[1] == want_t[i].ne1 && t->ne[2] == 1 && t->ne[3] == 1,
              "tensor %s type/shape", want_t[i].name);
        CHECK(t->nbytes == want_t[i].nbytes && (t->nbytes == 0 || !memcmp(t->data, want_t[i].data, t->nbytes)),
              "tensor %s data", want_t[i].name);
        CHECK(t->offset % want_align == 0, "tensor %s offset %llu aligned", want_t[i].name,
              (unsigned long long)t->offset);
    }
    CHECK(g->data_offset % want_align == 0, "data offset aligned");
    slm_gguf_free(g);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_roundtrip_and_determinism(void) {
    slm_gguf_writer *w = build_writer(0);
    CHECK(slm_gguf_writer_n_kv(w) == 21, "n_kv in writer %zu", slm_gguf_writer_n_kv(w));
    CHECK(slm_gguf_writer_write(w, path_in("a.gguf")) == SLM_OK, "write: %s", slm_last_error());
    CHECK(slm_gguf_writer_write(w, path_in("b.gguf")) == SLM_OK, "write again: %s", slm_last_error());
    slm_gguf_writer_free(w);
    check_model(path_in("a.gguf"), 32);
    size_t na, nb;
    uint8_t *a = read_all(path_in("a.gguf"), &na), *b = read_all(path_in("b.gguf"), &nb);
    CHECK(a && b && na == nb && !memcmp(a, b, na), "written twice: byte-identical (%zu vs %zu bytes)", na, nb);
    CHECK(na % 32 == 0, "file size %zu padded to the alignment", na);

    /* a second writer built from a fresh writer (new process state) gives the same bytes */
    w = build_writer(0);
    slm_gguf_writer_write(w, path_in("c.gguf"));
    slm_gguf_writer_free(w);
    size_t nc;
    uint8_t *c = read_all(path_in("c.gguf"), &nc);
    CHECK(c && nc == na && !memcmp(a, c, na), "rebuilt writer: byte-identical");
    free(c);

    /* copying every key/value and tensor of the file reproduces it byte for byte */
    slm_gguf *g;
    CHECK(slm_gguf_open(path_in("a.gguf"), &g) == SLM_OK, "open");
    slm_gguf_writer_create(&w);
    CHECK(slm_gguf_writer_copy_kvs(w, g) == SLM_OK, "copy kvs: %s", slm_last_error());
    for (size_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        char name[64];
        slm_gguf_str_copy(t->name, name, sizeof name);
        CHECK(slm_gguf_writer_add_tensor(w, name, t->n_dims, t->ne, t->type, t->data, t->nbytes) == SLM_OK, "copy");
    }
    CHECK(slm_gguf_writer_write(w, path_in("copy.gguf")) == SLM_OK, "write copy: %s", slm_last_error());
    c = read_all(path_in("copy.gguf"), &nc);
    CHECK(c && nc == na && !memcmp(a, c, na), "copy of a file is byte-identical");
    free(c);
    /* override and add on top of a copy */
    slm_gguf_writer_set_u32(w, "t.u8", 7); /* type changes too */
    slm_gguf_writer_set_str(w, "z.added", "yes");
    slm_gguf_writer_remove(w, "t.f64");
    CHECK(slm_gguf_writer_write(w, path_in("mod.gguf")) == SLM_OK, "write modified: %s", slm_last_error());
    slm_gguf_writer_free(w);
    slm_gguf_free(g);
    CHECK(slm_gguf_open(path_in("mod.gguf"), &g) == SLM_OK, "open modified");
    if (g) {
        const slm_gguf_value *v = slm_gguf_find(g, "t.u8");
        slm_gguf_str s;
        CHECK(v && v->type == SLM_GGUF_UINT32 && v->u64 == 7, "overridden key");
        CHECK(slm_gguf_get_str(g, "z.added", &s) == SLM_OK && slm_gguf_str_eq(s, "yes"), "added key");
        CHECK(!slm_gguf_find(g, "t.f64") && g->n_kv == 21, "removed key (n_kv %llu)", (unsigned long long)g->n_kv);
        CHECK(slm_gguf_find(g, "t.arr.arr.arr.i32") != NULL, "nested array survives a copy");
        slm_gguf_free(g);
    }
    free(a);
    free(b);
}

static void test_alignment(void) {
    slm_gguf_writer *w = build_writer(64);
    CHECK(slm_gguf_writer_write(w, path_in("al.gguf")) == SLM_OK, "write aligned 64: %s", slm_last_error());
    slm_gguf_writer_free(w);
    check_model(path_in("al.gguf"), 64);

    w = build_writer(48);
    int before = dir_entries();
    CHECK(slm_gguf_writer_write(w, path_in("bad.gguf")) == SLM_ERR_ARG, "alignment 48 rejected");
    CHECK(dir_entries() == before, "nothing written for a bad alignment");
    slm_gguf_writer_free(w);
}

static void test_bad_arguments(void) {
    slm_gguf_writer *w;
    slm_gguf_writer_create(&w);
    int64_t ne[] = {32, 2};
    float x[64] = {0};
    CHECK(slm_gguf_writer_add_tensor(w, "t", 2, ne, SLM_DT_F32, x, sizeof x / 2) == SLM_ERR_ARG, "wrong nbytes");
    CHECK(slm_gguf_writer_add_tensor(w, "t", 2, ne, SLM_DT_F32, x, sizeof x) == SLM_OK, "ok");
    CHECK(slm_gguf_writer_add_tensor(w, "t", 2, ne, SLM_DT_F32, x, sizeof x) == SLM_ERR_ARG, "duplicate");
    int64_t ne_odd[] = {33, 1};
    CHECK(slm_gguf_writer_add_tensor(w, "q", 2, ne_odd, SLM_DT_Q8_0, x, 34) == SLM_ERR_ARG, "row not blocks");
    CHECK(slm_gguf_writer_add_tensor(w, "", 2, ne, SLM_DT_F32, x, sizeof x) == SLM_ERR_ARG, "empty name");
    CHECK(slm_gguf_writer_add_tensor(w, "u", 2, ne, 4, x, sizeof x) == SLM_ERR_ARG, "retired dtype id");
    CHECK(slm_gguf_writer_set_str(w, "", "x") == SLM_ERR_ARG, "empty key");
    slm_gguf_value bad = {.type = SLM_GGUF_ARRAY, .arr = {SLM_GGUF_STRING, 2, NULL, NULL}};
    slm_gguf_writer_set(w, "bad", &bad);
    CHECK(slm_gguf_writer_write(w, path_in("bad.gguf")) == SLM_ERR_ARG, "string array without items");
    CHECK(access(path_in("bad.gguf"), F_OK) != 0, "no file for a bad value");
    slm_gguf_writer_free(w);
    slm_gguf_writer_free(NULL);
}

/* A failed write leaves nothing: no output, no temporary file; an existing file is kept. */
static void test_atomicity(void) {
    slm_gguf_writer *w = build_writer(0);
    slm_gguf_writer_write(w, path_in("full.gguf"));
    size_t full;
    uint8_t *ref = read_all(path_in("full.gguf"), &full);
    unlink(path_in("full.gguf"));
    int before = dir_entries();
    /* fail inside the header, the key/values, the padding and the tensor data */
    const uint64_t points[] = {1, 10, 100, 300, full - 200, full - 1};
    for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
        slm_gguf_writer_fail_after(w, points[i]);
        slm_status s = slm_gguf_writer_write(w, path_in("out.gguf"));
        CHECK(s == SLM_ERR_IO, "failure after %llu bytes: status %d", (unsigned long long)points[i], s);
        CHECK(strstr(slm_last_error(), "No space left") != NULL, "message: %s", slm_last_error());
        CHECK(access(path_in("out.gguf"), F_OK) != 0, "no output file after a failure at %llu",
              (unsigned long long)points[i]);
        CHECK(dir_entries() == before, "no temporary file left after a failure at %llu",
              (unsigned long long)points[i]);
    }
    /* an existing file under the name survives a failed write unchanged */
    FILE *f = fopen(path_in("keep.gguf"), "wb");
    fputs("previous contents", f);
    fclose(f);
    slm_gguf_writer_fail_after(w, 500);
    CHECK(slm_gguf_writer_write(w, path_in("keep.gguf")) == SLM_ERR_IO, "fails");
    size_t n;
    uint8_t *p = read_all(path_in("keep.gguf"), &n);
    CHECK(p && n == 17 && !memcmp(p, "previous contents", 17), "previous file kept after a failed write");
    free(p);
    /* the hook set at exactly the file size does not trigger */
    slm_gguf_writer_fail_after(w, full);
    CHECK(slm_gguf_writer_write(w, path_in("keep.gguf")) == SLM_OK, "fail_after = size: %s", slm_last_error());
    p = read_all(path_in("keep.gguf"), &n);
    CHECK(p && n == full && !memcmp(p, ref, n), "the replacement is complete");
    free(p);
    unlink(path_in("keep.gguf"));

    /* a real write error from the kernel: a file size limit (EFBIG), SIGXFSZ ignored */
    slm_gguf_writer_fail_after(w, 0);
    before = dir_entries();
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 300;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        slm_status s = slm_gguf_writer_write(w, path_in("limited.gguf"));
        setrlimit(RLIMIT_FSIZE, &old);
        CHECK(s == SLM_ERR_IO, "write past RLIMIT_FSIZE fails (status %d)", s);
        CHECK(strstr(slm_last_error(), "too large") != NULL, "message: %s", slm_last_error());
        CHECK(access(path_in("limited.gguf"), F_OK) != 0 && dir_entries() == before,
              "nothing left after a real write error");
    }
    signal(SIGXFSZ, prev);

    /* an unwritable directory */
    CHECK(slm_gguf_writer_write(w, "/nonexistent-dir/x.gguf") == SLM_ERR_IO, "missing directory");
    slm_gguf_writer_free(w);
    free(ref);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/slm_gwtest.XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    build_values();
    test_roundtrip_and_determinism();
    test_alignment();
    test_bad_arguments();
    test_atomicity();
    const char *names[] = {"a.gguf", "b.gguf", "c.gguf", "copy.gguf", "mod.gguf", "al.gguf"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) unlink(path_in(names[i]));
    CHECK(dir_entries() == 0, "test directory empty at the end (%d entries)", dir_entries());
    rmdir(g_dir);
    return test_summary("test_gguf_write");
}
