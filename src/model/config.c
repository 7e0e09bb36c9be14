/* config.c - architecture hyperparameters from GGUF metadata, validated. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Bounds that keep every later size computation far from overflow. */
#define MAX_LAYERS 1024
#define MAX_DIM (1 << 16)
#define MAX_FFN (1 << 20)
#define MAX_HEADS 1024

static slm_status get_u32_key(const slm_gguf *g, const char *arch, const char *suffix, uint32_t *out,
                              bool required, uint32_t def) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    slm_status s = slm_gguf_get_u32(g, key, out);
    if (s == SLM_ERR_NOT_FOUND) {
        if (required) return slm_error(SLM_ERR_FORMAT, "model: missing metadata key '%s'", key);
        *out = def;
        return SLM_OK;
    }
    return s;
}

static slm_status get_f32_key(const slm_gguf *g, const char *arch, const char *suffix, float *out, float def) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    slm_status s = slm_gguf_get_f32(g, key, out);
    if (s == SLM_ERR_NOT_FOUND) {
        *out = def;
        return SLM_OK;
    }
    return s;
}

static slm_status check_range(const char *what, uint32_t v, uint32_t lo, uint32_t hi) {
    if (v < lo || v > hi) return slm_error(SLM_ERR_FORMAT, "model: %s = %u is out of range [%u, %u]", what, v, lo, hi);
    return SLM_OK;
}

slm_status slm_config_from_gguf(const slm_gguf *g, slm_config *c) {
    memset(c, 0, sizeof *c);
    slm_gguf_str a;
    slm_status s = slm_gguf_get_str(g, "general.architecture", &a);
    if (s == SLM_ERR_NOT_FOUND) return slm_error(SLM_ERR_FORMAT, "model: missing metadata key 'general.architecture'");
    if (s) return s;
    slm_gguf_str_copy(a, c->arch_name, sizeof c->arch_name);
    if (slm_gguf_str_eq(a, "llama")) {
        c->arch = SLM_ARCH_LLAMA;
        c->rope_mode = SLM_ROPE_NORM;
    } else if (slm_gguf_str_eq(a, "qwen2")) {
        c->arch = SLM_ARCH_QWEN2;
        c->rope_mode = SLM_ROPE_NEOX;
    } else {
        return slm_error(SLM_ERR_UNSUPPORTED, "model: architecture '%s' is not supported (llama, qwen2)", c->arch_name);
    }
    const char *ar = c->arch_name;
    uint32_t n_layers, dim, ffn, heads, kv_heads, head_dim, ctx, rope_dim;
    if ((s = get_u32_key(g, ar, "block_count", &n_layers, true, 0))) return s;
    if ((s = get_u32_key(g, ar, "embedding_length", &dim, true, 0))) return s;
    if ((s = get_u32_key(g, ar, "feed_forward_length", &ffn, true, 0))) return s;
    if ((s = get_u32_key(g, ar, "attention.head_count", &heads, true, 0))) return s;
    if ((s = get_u32_key(g, ar, "attention.head_count_kv", &kv_heads, false, heads))) return s;
    if ((s = check_range("block_count", n_layers, 1, MAX_LAYERS))) return s;
    if ((s = check_range("embedding_length", dim, 1, MAX_DIM))) return s;
    if ((s = check_range("feed_forward_length", ffn, 1, MAX_FFN))) return s;
    if ((s = check_range("attention.head_count", heads, 1, MAX_HEADS))) return s;
    if ((s = check_range("attention.head_count_kv", kv_heads, 1, heads))) return s;
    if (heads % kv_heads)
        return slm_error(SLM_ERR_FORMAT, "model: head_count %u is not a multiple of head_count_kv %u", heads, kv_heads);
    if ((s = get_u32_key(g, ar, "attention.key_length", &head_dim, false, dim / heads))) return s;
    if ((s = check_range("attention.key_length", head_dim, 2, MAX_DIM))) return s;
    uint32_t vlen;
    if ((s = get_u32_key(g, ar, "attention.value_length", &vlen, false, head_dim))) return s;
    if (vlen != head_dim)
        return slm_error(SLM_ERR_UNSUPPORTED, "model: value_length %u differs from key_length %u", vlen, head_dim);
    if (head_dim % 2) return slm_error(SLM_ERR_FORMAT, "model: head dimension %u is odd", head_dim);
    if ((s = get_u32_key(g, ar, "context_length", &ctx, false, 2048))) return s;
    if ((s = check_range("context_length", ctx, 1, 1u << 24))) return s;
    if ((s = get_u32_key(g, ar, "rope.dimension_count", &rope_dim, false, head_dim))) return s;
    if (rope_dim > head_dim || rope_dim % 2)
        return slm_error(SLM_ERR_FORMAT, "model: rope.dimension_count %u invalid for head dimension %u", rope_dim,
                         head_dim);
    if ((s = get_f32_key(g, ar, "rope.freq_base", &c->rope_base, 10000.0f))) return s;
    if ((s = get_f32_key(g, ar, "attention.layer_norm_rms_epsilon", &c->norm_eps, 1e-5f))) return s;
    if (!(c->rope_base > 0 && isfinite(c->rope_base)))
        return slm_error(SLM_ERR_FORMAT, "model: rope.freq_base %g is not a positive number", c->rope_base);
    if (!(c->norm_eps > 0 && c->norm_eps < 1))
        return slm_error(SLM_ERR_FORMAT, "model: layer_norm_rms_epsilon %g is out of range", c->norm_eps);

    c->rope_scale = 1.0f;
    char key[128];
    slm_gguf_str stype;
    snprintf(key, sizeof key, "%s.rope.scaling.type", ar);
    s = slm_gguf_get_str(g, key, &stype);
    if (s == SLM_OK && !slm_gguf_str_eq(stype, "none")) {
        if (!slm_gguf_str_eq(stype, "linear")) {
            char t[32];
            return slm_error(SLM_ERR_UNSUPPORTED, "model: rope scaling type '%s' is not supported (none, linear)",
                             slm_gguf_str_copy(stype, t, sizeof t));
        }
        float factor;
        if ((s = get_f32_key(g, ar, "rope.scaling.factor", &factor, 1.0f))) return s;
        if (!(factor >= 1.0f && factor < 1e6f))
            return slm_error(SLM_ERR_FORMAT, "model: rope.scaling.factor %g is out of range", factor);
        c->rope_scale = 1.0f / factor;
    } else if (s != SLM_OK && s != SLM_ERR_NOT_FOUND) {
        return s;
    }
    c->n_layers = (int)n_layers;
    c->dim = (int)dim;
    c->ffn_dim = (int)ffn;
    c->n_heads = (int)heads;
    c->n_kv_heads = (int)kv_heads;
    c->head_dim = (int)head_dim;
    c->ctx_len = (int)ctx;
    c->rope_dim = (int)rope_dim;
    return SLM_OK;
}
