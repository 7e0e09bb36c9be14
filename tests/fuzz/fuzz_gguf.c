/* fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Parses the input; when it parses, walks every key/value (recursively through arrays,
 * reading every byte the parsed values point at) and touches the first and last byte of
 * every tensor, so ASan reports any pointer or size that leaves the input.
 *   make fuzz FUZZ_SECONDS=300 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/gguf.h"
#include "core/status.h"

static volatile uint64_t g_sink;

static size_t elem_bytes(uint32_t t) {
    switch (t) {
    case SLM_GGUF_UINT8: case SLM_GGUF_INT8: case SLM_GGUF_BOOL: return 1;
    case SLM_GGUF_UINT16: case SLM_GGUF_INT16: return 2;
    case SLM_GGUF_UINT32: case SLM_GGUF_INT32: case SLM_GGUF_FLOAT32: return 4;
    case SLM_GGUF_UINT64: case SLM_GGUF_INT64: case SLM_GGUF_FLOAT64: return 8;
    default: abort(); /* the reader never produces other numeric element types */
    }
}

static uint64_t touch(const void *p, uint64_t n) {
    const uint8_t *b = p;
    uint64_t h = 0;
    for (uint64_t i = 0; i < n; i++) h = h * 31 + b[i];
    return h;
}

static uint64_t walk_value(const slm_gguf_value *v, int depth) {
    if (depth > SLM_GGUF_MAX_NESTING) abort();
    switch (v->type) {
    case SLM_GGUF_STRING: return touch(v->str.ptr, v->str.len);
    case SLM_GGUF_ARRAY:
        if (v->arr.type >= SLM_GGUF_VTYPE_COUNT) abort();
        if (v->arr.type == SLM_GGUF_STRING || v->arr.type == SLM_GGUF_ARRAY) {
            uint64_t h = 0;
            if (v->arr.n && !v->arr.items) abort();
            for (uint64_t i = 0; i < v->arr.n; i++) {
                if (v->arr.items[i].type != v->arr.type) abort();
                h += walk_value(&v->arr.items[i], depth + 1);
            }
            return h;
        }
        if (v->arr.type == SLM_GGUF_BOOL)
            for (uint64_t i = 0; i < v->arr.n; i++)
                if (v->arr.raw[i] > 1) abort();
        return touch(v->arr.raw, v->arr.n * elem_bytes(v->arr.type));
    case SLM_GGUF_BOOL: return v->b;
    case SLM_GGUF_FLOAT32: case SLM_GGUF_FLOAT64: return (uint64_t)(v->f64 == v->f64);
    default:
        if (v->type >= SLM_GGUF_VTYPE_COUNT) abort();
        return v->u64;
    }
}

static void check_status(slm_status s) {
    if (s != SLM_OK && (s != SLM_ERR_FORMAT || !slm_last_error()[0])) abort();
}

/* Every getter on the key: each either succeeds or fails with a message. */
static uint64_t getters(const slm_gguf *g, const slm_gguf_kv *kv) {
    char key[256];
    if (kv->key.len >= sizeof key || memchr(kv->key.ptr, 0, kv->key.len)) return 0;
    slm_gguf_str_copy(kv->key, key, sizeof key);
    if (slm_gguf_find(g, key) == NULL) abort(); /* the first kv with this key */
    uint32_t u = 0;
    float f = 0;
    bool b = false;
    slm_gguf_str s = {0, NULL};
    const slm_gguf_value *v = NULL;
    check_status(slm_gguf_get_u32(g, key, &u));
    check_status(slm_gguf_get_f32(g, key, &f));
    check_status(slm_gguf_get_bool(g, key, &b));
    check_status(slm_gguf_get_str(g, key, &s));
    check_status(slm_gguf_get_arr(g, key, SLM_GGUF_STRING, &v));
    return u + (uint64_t)(f == f) + b + s.len + (v ? v->arr.n : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    slm_gguf *g = NULL;
    slm_status s = slm_gguf_parse(data, size, &g);
    if (s != SLM_OK) {
        /* A failure is a format error with a one-line message and no result. */
        const char *msg = slm_last_error();
        if (s != SLM_ERR_FORMAT || g || !msg[0] || strchr(msg, '\n')) abort();
        return 0;
    }
    uint64_t h = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        h += touch(g->kv[i].key.ptr, g->kv[i].key.len);
        h += walk_value(&g->kv[i].value, 0);
        h += getters(g, &g->kv[i]);
    }
    if (slm_gguf_find(g, "general.alignment") == NULL && g->alignment != SLM_GGUF_DEFAULT_ALIGNMENT) abort();
    if (g->alignment == 0 || (g->alignment & (g->alignment - 1)) || g->data_offset > size) abort();
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        const uint8_t *d = t->data;
        if (t->name.len == 0) abort();
        if (d < data || (size_t)(d - data) > size || t->nbytes > size - (size_t)(d - data)) abort();
        if (t->n_dims < 1 || t->n_dims > SLM_GGUF_MAX_DIMS || t->offset % g->alignment) abort();
        if (t->nbytes) h += d[0] + d[t->nbytes - 1];
    }
    if (g->n_tensors && slm_gguf_find_tensor(g, "") != NULL) abort();
    g_sink = h;
    slm_gguf_free(g);
    return 0;
}
