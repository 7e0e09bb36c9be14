/* kvcache.h - the KV cache as a pool of fixed-size blocks addressed through block tables.
 *
 * The pool holds n_blocks blocks of block_size token positions; a block id covers that span of
 * positions in every layer. A sequence owns a block table mapping its logical block j
 * (positions [j*block_size, (j+1)*block_size)) to a physical block. Blocks are taken from a
 * free list as a sequence grows and returned when it shrinks or ends; a reference count per
 * block lets sequences share blocks: slm_seq_fork gives a new sequence all blocks of another,
 * and a shared block is copied (in every layer) before either sequence writes into it.
 *
 * Copy-on-write contract: slm_kv_store never allocates or copies; it writes where the block
 * table points. A position must be made writable first, by slm_seq_reserve (which un-shares
 * the blocks covering [seq->n_tokens, n_tokens), the positions a sequence appends next) or by
 * slm_seq_prepare_write for an explicit range. The forward pass reserves before it stores, so
 * forked sequences never see each other's writes. */
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

/* Bytes of one block (keys and values of block_size positions in all layers); 0 on overflow. */
size_t slm_kv_block_bytes(slm_kv_type type, int n_layers, int kv_dim, int block_size);
/* Pool capacity in tokens (a whole number of blocks) that fits in `bytes`; 0 if not even one
 * block fits. Use it to size a pool in bytes: slm_kv_create(..., slm_kv_tokens_for_bytes(...)). */
int slm_kv_tokens_for_bytes(slm_kv_type type, int n_layers, int kv_dim, int block_size, size_t bytes);

/* A pool with room for at least capacity_tokens positions. */
slm_status slm_kv_create(slm_kv_type type, int n_layers, int kv_dim, int block_size, int capacity_tokens, slm_kv **out);
void slm_kv_free(slm_kv *kv); /* NULL is a no-op */

/* Make sure positions [0, n_tokens) have blocks (allocating from the pool) and that positions
 * [seq->n_tokens, n_tokens) are writable (shared blocks there are copied first). SLM_ERR_FULL
 * with a message when the pool has too few free blocks; on any error nothing changes. Does not
 * change seq->n_tokens. */
slm_status slm_seq_reserve(slm_kv *kv, slm_seq *seq, int n_tokens);
/* Make positions [pos, pos + n) writable: blocks are allocated up to pos + n and every block
 * covering the range that is shared with another sequence is replaced by a private copy (all
 * layers, keys and values). SLM_ERR_FULL when the pool cannot supply the blocks; on any error
 * nothing changes. */
slm_status slm_seq_prepare_write(slm_kv *kv, slm_seq *seq, int pos, int n);
/* dst (empty: zero-initialized or released) becomes a copy of src sharing all its blocks
 * (reference counts incremented), with the same n_tokens. No block is allocated. */
slm_status slm_seq_fork(slm_kv *kv, const slm_seq *src, slm_seq *dst);
/* Forget positions >= n_tokens; blocks no longer needed go back to the pool. */
void slm_seq_truncate(slm_kv *kv, slm_seq *seq, int n_tokens);
/* Release all blocks and the table. */
void slm_seq_release(slm_kv *kv, slm_seq *seq);

/* Extra references on a block, for a cache of blocks outside any sequence (prefix sharing):
 * a referenced block is not returned to the pool until its last reference is dropped. */
void slm_kv_block_ref(slm_kv *kv, int32_t id);
void slm_kv_block_unref(slm_kv *kv, int32_t id);
/* Append block id (taking a reference) as the next full block of seq, whose n_tokens must be
 * a whole number of blocks (seq->n_blocks * block_size); n_tokens grows by block_size. */
slm_status slm_seq_append_block(slm_kv *kv, slm_seq *seq, int32_t id);

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

/* Memory accounting for a set of sequences (the PagedAttention waste comparison). */
typedef struct {
    size_t token_bytes;     /* bytes per cached position (keys + values, all layers) */
    long tokens;            /* sum of n_tokens over the sequences */
    int blocks;             /* distinct blocks held (a shared block counts once) */
    size_t used_bytes;      /* tokens * token_bytes: what the data needs */
    size_t paged_bytes;     /* blocks * block bytes: what the paged cache holds */
    size_t reserved_bytes;  /* n_seqs * max_ctx * token_bytes: a cache reserving max context */
    double paged_waste;     /* 1 - used/paged (0 when empty; negative when shared blocks save memory) */
    double reserved_waste;  /* 1 - used/reserved (0 when empty) */
} slm_kv_usage;
/* Fill *u for seqs[0..n_seqs). max_ctx: the context a reserving cache allots per sequence. */
slm_status slm_kv_account(const slm_kv *kv, const slm_seq *const *seqs, int n_seqs, int max_ctx, slm_kv_usage *u);

/* Store n = kv_dim floats as the key / value of position pos (converting to kv->type).
 * The position must be writable (see the copy-on-write contract above). */
void slm_kv_store(const slm_kv *kv, const slm_seq *seq, int layer, int pos, const float *k, const float *v);

#endif
