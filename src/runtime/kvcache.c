/* kvcache.c - block pool and per-sequence block tables. */
#include "kvcache.h"

#include <stdlib.h>
#include <string.h>

#include "../core/dtype.h"

slm_status slm_kv_create(slm_kv_type type, int n_layers, int kv_dim, int block_size, int capacity_tokens, slm_kv **out) {
    *out = NULL;
    if (type != SLM_KV_F16 && type != SLM_KV_F32) return slm_error(SLM_ERR_ARG, "kv cache: unknown element type %d", (int)type);
    if (n_layers <= 0 || kv_dim <= 0 || block_size <= 0 || capacity_tokens <= 0 || block_size > 4096)
        return slm_error(SLM_ERR_ARG, "kv cache: bad geometry (layers %d, kv_dim %d, block %d, capacity %d)", n_layers,
                         kv_dim, block_size, capacity_tokens);
    int n_blocks = (capacity_tokens + block_size - 1) / block_size;
    size_t per = 0, total = 0;
    if (__builtin_mul_overflow((size_t)n_layers * (size_t)block_size, (size_t)kv_dim, &per) ||
        __builtin_mul_overflow(per, (size_t)n_blocks, &total) || total > ((size_t)1 << 40) / sizeof(float))
        return slm_error(SLM_ERR_ARG, "kv cache: %d tokens x %d layers x %d is too large", capacity_tokens, n_layers,
                         kv_dim);
    slm_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return slm_error(SLM_ERR_NOMEM, "kv cache: out of memory");
    kv->type = type;
    kv->elem_size = type == SLM_KV_F16 ? 2 : 4;
    kv->n_layers = n_layers;
    kv->kv_dim = kv_dim;
    kv->block_size = block_size;
    kv->n_blocks = n_blocks;
    kv->k = malloc(total * kv->elem_size);
    kv->v = malloc(total * kv->elem_size);
    kv->refs = calloc((size_t)n_blocks, sizeof(int32_t));
    kv->free_list = malloc((size_t)n_blocks * sizeof(int32_t));
    if (!kv->k || !kv->v || !kv->refs || !kv->free_list) {
        size_t bytes = 2 * total * kv->elem_size;
        slm_kv_free(kv);
        return slm_error(SLM_ERR_NOMEM, "kv cache: out of memory for %zu bytes", bytes);
    }
    /* Stack ordered so block 0 is handed out first. */
    for (int i = 0; i < n_blocks; i++) kv->free_list[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    *out = kv;
    return SLM_OK;
}

void slm_kv_free(slm_kv *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv->refs);
    free(kv->free_list);
    free(kv);
}

slm_status slm_seq_reserve(slm_kv *kv, slm_seq *seq, int n_tokens) {
    if (n_tokens < 0) return slm_error(SLM_ERR_ARG, "kv cache: negative length");
    int need = (n_tokens + kv->block_size - 1) / kv->block_size;
    if (need <= seq->n_blocks) return SLM_OK;
    if (need - seq->n_blocks > kv->n_free)
        return slm_error(SLM_ERR_FULL, "kv cache: full (%d tokens requested, pool of %d blocks x %d tokens has %d free)",
                         n_tokens, kv->n_blocks, kv->block_size, kv->n_free);
    if (need > seq->cap) {
        int cap = seq->cap ? seq->cap : 8;
        while (cap < need) cap *= 2;
        int32_t *b = realloc(seq->blocks, (size_t)cap * sizeof *b);
        if (!b) return slm_error(SLM_ERR_NOMEM, "kv cache: out of memory");
        seq->blocks = b;
        seq->cap = cap;
    }
    while (seq->n_blocks < need) {
        int32_t id = kv->free_list[--kv->n_free];
        kv->refs[id] = 1;
        seq->blocks[seq->n_blocks++] = id;
    }
    return SLM_OK;
}

static void unref(slm_kv *kv, int32_t id) {
    if (--kv->refs[id] == 0) kv->free_list[kv->n_free++] = id;
}

void slm_seq_truncate(slm_kv *kv, slm_seq *seq, int n_tokens) {
    if (n_tokens < 0) n_tokens = 0;
    if (n_tokens < seq->n_tokens) seq->n_tokens = n_tokens;
    int keep = (n_tokens + kv->block_size - 1) / kv->block_size;
    while (seq->n_blocks > keep) unref(kv, seq->blocks[--seq->n_blocks]);
}

void slm_seq_release(slm_kv *kv, slm_seq *seq) {
    slm_seq_truncate(kv, seq, 0);
    free(seq->blocks);
    memset(seq, 0, sizeof *seq);
}

void slm_kv_store(const slm_kv *kv, const slm_seq *seq, int layer, int pos, const float *k, const float *v) {
    void *kd = slm_kv_key(kv, seq, layer, pos), *vd = slm_kv_value(kv, seq, layer, pos);
    if (kv->type == SLM_KV_F32) {
        memcpy(kd, k, (size_t)kv->kv_dim * sizeof(float));
        memcpy(vd, v, (size_t)kv->kv_dim * sizeof(float));
        return;
    }
    uint16_t *kh = kd, *vh = vd;
    for (int i = 0; i < kv->kv_dim; i++) {
        kh[i] = slm_f32_to_f16(k[i]);
        vh[i] = slm_f32_to_f16(v[i]);
    }
}
