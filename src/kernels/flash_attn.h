/* flash_attn.h - tiled causal grouped-query attention over the paged KV cache with an online
 * softmax (FlashAttention-2 formulation), and split-key decoding (flash decoding).
 *
 * Prefill: queries are taken in tiles of SLM_FA_QTILE positions; for one KV head the tile holds
 * the rows of all query heads of its group (group * SLM_FA_QTILE rows). Keys and values stream
 * in tiles of SLM_FA_KTILE positions, read through the block table once per block touched and
 * converted to float once per tile for all those rows. Each row keeps a running max m, a running
 * sum l and an unnormalized output o; a new key tile with max m' rescales them by exp(m - m').
 * The output is divided by l once, after the last key tile. Causal: key tiles wholly after the
 * last query of the tile are never read, the diagonal tile is masked per row. A work item is
 * (query tile, KV head): item = tile * n_kv_heads + kv_head.
 *
 * Decode (one query position): the key range [0, pos] is split in parts; each part yields
 * (m, l, o) per query head, and slm_fa_decode_merge combines parts exactly:
 * m = max m_i, o = sum exp(m_i - m) o_i / sum exp(m_i - m) l_i.
 *
 * The kernels never allocate: each thread passes scratch of slm_fa_scratch_floats() floats.
 * slm_attention (attention.h) is the naive twin the tests compare with. */
#ifndef SLM_FLASH_ATTN_H
#define SLM_FLASH_ATTN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/kvcache.h"

#define SLM_FA_QTILE 32      /* query positions per tile */
#define SLM_FA_KTILE 64      /* key positions per tile */
#define SLM_FA_SPLIT_MIN 256 /* decode splits the key range once pos + 1 reaches this */

/* One attention call: queries q [n_tok][n_heads*head_dim] at positions pos0.., keys and
 * values of layer `layer` of `seq` (positions 0..pos0+n_tok-1 stored), output out
 * [n_tok][n_heads*head_dim]. Query head h reads KV head h / (n_heads / n_kv_heads).
 * simd: use the AVX2 kernels (only if slm_attention_simd_available()).
 * avx512: with simd, use the AVX-512 row kernel instead (only if slm_fa_avx512_available());
 * a field left zero keeps the AVX2 one. */
typedef struct {
    const slm_kv *kv;
    const slm_seq *seq;
    int layer;
    const float *q;
    int n_tok, pos0;
    int n_heads, n_kv_heads, head_dim;
    float *out;
    bool simd;
    bool avx512;
} slm_fa_args;

/* Whether the AVX-512 row kernel can run here (the AVX-512 kernel table exists). */
bool slm_fa_avx512_available(void);

/* Floats of per-thread scratch for prefill and decode parts (independent of the context). */
size_t slm_fa_scratch_floats(int n_heads, int n_kv_heads, int head_dim);

/* Number of prefill work items: n_kv_heads * ceil(n_tok / SLM_FA_QTILE). */
long slm_fa_prefill_items(const slm_fa_args *a);
/* Compute work items [lo, hi) (any subset of items may run on different threads). */
void slm_fa_prefill(const slm_fa_args *a, long lo, long hi, float *scratch);

/* Floats of one decode part: n_heads * (head_dim + 2), laid out per head as o[head_dim], m, l. */
size_t slm_fa_part_floats(int n_heads, int head_dim);
/* Decode part over keys [k0, k1) for the single query (a->n_tok == 1, position a->pos0;
 * k1 <= pos0 + 1). An empty range yields m = -inf, l = 0, o = 0. */
void slm_fa_decode_part(const slm_fa_args *a, int k0, int k1, float *scratch, float *part);
/* Merge n_parts parts (consecutive, slm_fa_part_floats apart) into out [n_heads*head_dim]. */
void slm_fa_decode_merge(const float *parts, int n_parts, int n_heads, int head_dim, float *out);

/* One row step of the online softmax: scores s[c] = q . K[c] for c < n (q already scaled),
 * m' = max(m, max s), o = o * exp(m - m') + sum exp(s[c] - m') V[c], l likewise, m = m'.
 * K and V are [n][hd] floats, s is scratch [n]; n <= 0 changes nothing. Scalar reference and
 * AVX2 twin. */
void slm_fa_row_ref(const float *q, const float *K, const float *V, int n, int hd, float *s, float *m, float *l,
                    float *o);
void slm_fa_row_avx2(const float *q, const float *K, const float *V, int n, int hd, float *s, float *m, float *l,
                     float *o);
/* AVX-512 twin of the row kernel (AVX-512 F/VL). */
void slm_fa_row_avx512(const float *q, const float *K, const float *V, int n, int hd, float *s, float *m, float *l,
                       float *o);
/* dst[i] = f16 src[i] as float (AVX2 + F16C). */
void slm_fa_f16_to_f32_avx2(float *dst, const uint16_t *src, int n);
/* exp of n floats (AVX2 polynomial, about 2 ulp; scalar twin: expf). */
void slm_fa_exp_avx2(float *x, int n);

#endif
