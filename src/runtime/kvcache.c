/* kvcache.c - block pool and per-sequence block tables. */
#include "kvcache.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dtype.h"

size_t slm_kv_block_bytes(slm_kv_type type, int n_layers, int kv_dim, int block_size) {
    size_t esz = type == SLM_KV_F16 ? 2 : 4, r;
    if (n_layers <= 0 || kv_dim <= 0 || block_size <= 0) return 0;
    if (__builtin_mul_overflow((size_t)n_layers * (size_t)block_size, (size_t)kv_dim, &r) ||
        __builtin_mul_overflow(r, 2 * esz, &r))
        return 0;
    return r;
}

int slm_kv_tokens_for_bytes(slm_kv_type type, int n_layers, int kv_dim, int block_size, size_t bytes) {
    const size_t bb = slm_kv_block_bytes(type, n_layers, kv_dim, block_size);
    if (bb == 0) return 0;
    size_t blocks = bytes / bb;
    const size_t max_blocks = (size_t)INT_MAX / (size_t)block_size;
    if (blocks > max_blocks) blocks = max_blocks;
    return (int)(blocks * (size_t)block_size);
}

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

/* Number of blocks covering positions [0, n) (n >= 0). */
static long blocks_for(const slm_kv *kv, long n) { return (n + kv->block_size - 1) / kv->block_size; }

static slm_status grow_table(slm_seq *seq, long need) {
    if (need <= seq->cap) return SLM_OK;
    long cap = seq->cap ? seq->cap : 8;
    while (cap < need) cap *= 2;
    int32_t *b = realloc(seq->blocks, (size_t)cap * sizeof *b);
    if (!b) return slm_error(SLM_ERR_NOMEM, "kv cache: out of memory for a block table of %ld entries", cap);
    seq->blocks = b;
    seq->cap = (int)cap;
    return SLM_OK;
}

/* Copy block `from` into block `to` in every layer, keys and values. */
static void copy_block(slm_kv *kv, int32_t from, int32_t to) {
    const size_t bytes = (size_t)kv->block_size * kv->kv_dim * kv->elem_size;
    for (int l = 0; l < kv->n_layers; l++) {
        const size_t src = ((size_t)l * kv->n_blocks + (size_t)from) * bytes;
        const size_t dst = ((size_t)l * kv->n_blocks + (size_t)to) * bytes;
        memcpy((char *)kv->k + dst, (const char *)kv->k + src, bytes);
        memcpy((char *)kv->v + dst, (const char *)kv->v + src, bytes);
    }
}

static void unref(slm_kv *kv, int32_t id) {
    if (--kv->refs[id] == 0) kv->free_list[kv->n_free++] = id;
}

slm_status slm_seq_prepare_write(slm_kv *kv, slm_seq *seq, int pos, int n) {
    if (pos < 0 || n < 0 || (long)pos + n > INT_MAX)
        return slm_error(SLM_ERR_ARG, "kv cache: bad write range [%d, %d + %d)", pos, pos, n);
    const long end = (long)pos + n;
    const long need = blocks_for(kv, end);
    const long fresh = need > seq->n_blocks ? need - seq->n_blocks : 0;
    /* shared blocks inside the write range that must be copied */
    long cow = 0;
    const long b0 = pos / kv->block_size, b1 = n ? blocks_for(kv, end) : b0;
    for (long b = b0; b < b1 && b < seq->n_blocks; b++) cow += kv->refs[seq->blocks[b]] > 1;
    if (fresh + cow > kv->n_free)
        return slm_error(SLM_ERR_FULL,
                         "kv cache: full (writing positions [%d, %ld) needs %ld blocks, pool of %d blocks x %d tokens "
                         "has %d free)",
                         pos, end, fresh + cow, kv->n_blocks, kv->block_size, kv->n_free);
    slm_status s = grow_table(seq, need);
    if (s) return s;
    for (long b = b0; cow && b < b1 && b < seq->n_blocks; b++) {
        const int32_t old = seq->blocks[b];
        if (kv->refs[old] <= 1) continue;
        const int32_t id = kv->free_list[--kv->n_free];
        copy_block(kv, old, id);
        kv->refs[id] = 1;
        unref(kv, old);
        seq->blocks[b] = id;
    }
    while (seq->n_blocks < need) {
        int32_t id = kv->free_list[--kv->n_free];
        kv->refs[id] = 1;
        seq->blocks[seq->n_blocks++] = id;
    }
    return SLM_OK;
}

void slm_kv_block_ref(slm_kv *kv, int32_t id) { kv->refs[id]++; }

void slm_kv_block_unref(slm_kv *kv, int32_t id) { unref(kv, id); }

slm_status slm_seq_append_block(slm_kv *kv, slm_seq *seq, int32_t id) {
    if (id < 0 || id >= kv->n_blocks || kv->refs[id] <= 0 || seq->n_tokens != seq->n_blocks * kv->block_size)
        return slm_error(SLM_ERR_ARG, "kv cache: cannot append block %d", id);
    slm_status s = grow_table(seq, (long)seq->n_blocks + 1);
    if (s) return s;
    kv->refs[id]++;
    seq->blocks[seq->n_blocks++] = id;
    seq->n_tokens += kv->block_size;
    return SLM_OK;
}

slm_status slm_seq_reserve(slm_kv *kv, slm_seq *seq, int n_tokens) {
    if (n_tokens < 0) return slm_error(SLM_ERR_ARG, "kv cache: negative length");
    const int from = seq->n_tokens < n_tokens ? seq->n_tokens : n_tokens;
    return slm_seq_prepare_write(kv, seq, from, n_tokens - from);
}

slm_status slm_seq_fork(slm_kv *kv, const slm_seq *src, slm_seq *dst) {
    if (src == dst || dst->n_blocks != 0)
        return slm_error(SLM_ERR_ARG, "kv cache: fork needs an empty destination sequence");
    for (int b = 0; b < src->n_blocks; b++)
        if (kv->refs[src->blocks[b]] == INT32_MAX)
            return slm_error(SLM_ERR_FULL, "kv cache: block %d is shared by too many sequences", (int)src->blocks[b]);
    slm_status s = grow_table(dst, src->n_blocks);
    if (s) return s;
    for (int b = 0; b < src->n_blocks; b++) {
        dst->blocks[b] = src->blocks[b];
        kv->refs[src->blocks[b]]++;
    }
    dst->n_blocks = src->n_blocks;
    dst->n_tokens = src->n_tokens;
    return SLM_OK;
}

void slm_seq_truncate(slm_kv *kv, slm_seq *seq, int n_tokens) {
    if (n_tokens < 0) n_tokens = 0;
    if (n_tokens < seq->n_tokens) seq->n_tokens = n_tokens;
    const long keep = blocks_for(kv, n_tokens);
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

slm_status slm_kv_account(const slm_kv *kv, const slm_seq *const *seqs, int n_seqs, int max_ctx, slm_kv_usage *u) {
    memset(u, 0, sizeof *u);
    if (n_seqs < 0 || max_ctx < 0 || (n_seqs > 0 && !seqs))
        return slm_error(SLM_ERR_ARG, "kv cache: bad accounting request (%d sequences, max context %d)", n_seqs, max_ctx);
    unsigned char *seen = calloc((size_t)kv->n_blocks, 1);
    if (!seen) return slm_error(SLM_ERR_NOMEM, "kv cache: out of memory");
    u->token_bytes = 2 * (size_t)kv->n_layers * kv->kv_dim * kv->elem_size;
    for (int i = 0; i < n_seqs; i++) {
        const slm_seq *q = seqs[i];
        u->tokens += q->n_tokens;
        for (int b = 0; b < q->n_blocks; b++)
            if (!seen[q->blocks[b]]) {
                seen[q->blocks[b]] = 1;
                u->blocks++;
            }
    }
    free(seen);
    u->used_bytes = (size_t)u->tokens * u->token_bytes;
    u->paged_bytes = (size_t)u->blocks * kv->block_size * u->token_bytes;
    u->reserved_bytes = (size_t)n_seqs * (size_t)max_ctx * u->token_bytes;
    u->paged_waste = u->paged_bytes ? 1.0 - (double)u->used_bytes / (double)u->paged_bytes : 0.0;
    u->reserved_waste = u->reserved_bytes ? 1.0 - (double)u->used_bytes / (double)u->reserved_bytes : 0.0;
    return SLM_OK;
}
