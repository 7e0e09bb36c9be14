/* kvcache.h - the KV cache as a pool of fixed-size blocks addressed through block tables.
 *
 * The pool holds n_blocks blocks of block_size token positions; a block id covers that span of
 * positions in every layer. A sequence owns a block table mapping its logical block j
 * (positions [j*block_size, (j+1)*block_size)) to a physical block. Blocks are taken from a
 * free list as a sequence grows and returned when it shrinks or ends; a reference count per
 * block lets sequences share blocks (used by later prefix sharing / copy-on-write). */
#ifndef SLM_KVCACHE_H
#define SLM_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

/* Element type of the cached keys and values. */
typedef enum { SLM_KV_F16 = 0, SLM_KV_F32 = 1 } slm_kv_type;

typedef struct {
    slm_kv_type type;
    size_t elem_size;      /* 2 or 4 */
    int n_layers, kv_dim;  /* kv_dim = n_kv_heads * head_dim */
    int block_size;        /* token positions per block */
    int n_blocks;          /* pool size */
    void *k, *v;           /* [n_layers][n_blocks][block_size][kv_dim] of `type` */
    int32_t *refs;         /* [n_blocks] reference counts; 0 = free */
    int32_t *free_list;    /* [n_blocks] stack of free block ids */
    int n_free;
} slm_kv;

typedef struct {
    int32_t *blocks;       /* [cap] block table: logical block -> physical block */
    int n_blocks, cap;
    int n_tokens;          /* positions filled */
} slm_seq;

#define SLM_KV_DEFAULT_BLOCK 16

/* A pool with room for at least capacity_tokens positions. */
slm_status slm_kv_create(slm_kv_type type, int n_layers, int kv_dim, int block_size, int capacity_tokens, slm_kv **out);
void slm_kv_free(slm_kv *kv); /* NULL is a no-op */

/* Make sure positions [0, n_tokens) have blocks (allocating from the pool). SLM_ERR_FULL with
 * a message when the pool has no free block left. Does not change seq->n_tokens. */
slm_status slm_seq_reserve(slm_kv *kv, slm_seq *seq, int n_tokens);
/* Forget positions >= n_tokens; blocks no longer needed go back to the pool. */
void slm_seq_truncate(slm_kv *kv, slm_seq *seq, int n_tokens);
/* Release all blocks and the table. */
void slm_seq_release(slm_kv *kv, slm_seq *seq);

/* Element offset of position pos of layer `layer` (pos must be reserved). */
static inline size_t slm_kv_offset(const slm_kv *kv, const slm_seq *seq, int layer, int pos) {
    int32_t b = seq->blocks[pos / kv->block_size];
    return (((size_t)layer * kv->n_blocks + (size_t)b) * kv->block_size + (size_t)(pos % kv->block_size)) * kv->kv_dim;
}
/* Address of the key / value vector [kv_dim] (of kv->type) of position pos. */
static inline void *slm_kv_key(const slm_kv *kv, const slm_seq *seq, int layer, int pos) {
    return (char *)kv->k + slm_kv_offset(kv, seq, layer, pos) * kv->elem_size;
}
static inline void *slm_kv_value(const slm_kv *kv, const slm_seq *seq, int layer, int pos) {
    return (char *)kv->v + slm_kv_offset(kv, seq, layer, pos) * kv->elem_size;
}

/* Store n = kv_dim floats as the key / value of position pos (converting to kv->type). */
void slm_kv_store(const slm_kv *kv, const slm_seq *seq, int layer, int pos, const float *k, const float *v);

#endif
