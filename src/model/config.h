/* config.h - architecture hyperparameters read from GGUF metadata. */
#ifndef SLM_CONFIG_H
#define SLM_CONFIG_H

#include "../core/gguf.h"
#include "../core/status.h"

typedef enum { SLM_ARCH_LLAMA = 0, SLM_ARCH_QWEN2 = 1 } slm_arch;

/* How RoPE pairs dimensions: NORM rotates adjacent pairs (x[2i], x[2i+1]) as the llama
 * architecture's GGUF files expect; NEOX rotates (x[i], x[i + rope_dim/2]) (qwen2). */
typedef enum { SLM_ROPE_NORM = 0, SLM_ROPE_NEOX = 1 } slm_rope_mode;

typedef struct {
    slm_arch arch;
    char arch_name[32];   /* general.architecture */
    int n_layers;         /* {arch}.block_count */
    int dim;              /* {arch}.embedding_length */
    int ffn_dim;          /* {arch}.feed_forward_length */
    int n_heads;          /* {arch}.attention.head_count */
    int n_kv_heads;       /* {arch}.attention.head_count_kv (default n_heads) */
    int head_dim;         /* {arch}.attention.key_length (default dim / n_heads) */
    int vocab_size;       /* rows of token_embd.weight */
    int ctx_len;          /* {arch}.context_length: trained context */
    int rope_dim;         /* {arch}.rope.dimension_count (default head_dim) */
    float rope_base;      /* {arch}.rope.freq_base (default 10000) */
    float rope_scale;     /* linear position scale: positions are multiplied by this (1/factor) */
    float norm_eps;       /* {arch}.attention.layer_norm_rms_epsilon */
    slm_rope_mode rope_mode;
} slm_config;

/* Read and validate the config (positive sizes, heads divide evenly, sane bounds).
 * vocab_size is left 0: the model loader sets it from the embedding tensor. */
slm_status slm_config_from_gguf(const slm_gguf *g, slm_config *c);

#endif
