#!/usr/bin/env python3
"""make_tiny_model.py - write a tiny random Llama-family GGUF model for tests.

  python3 tests/reference/make_tiny_model.py OUT.gguf [--arch llama|qwen2]
      [--type f32|f16|q8_0|q4_0|q4_1] [--embd-type TYPE] [--untied] [--seed N]
      [--layers 2] [--dim 64] [--heads 4] [--kv-heads 2] [--ffn 128] [--vocab 300]
      [--ctx 256] [--rope-base 10000] [--rope-scale F] [--eps 1e-5] [--pre gpt-2]

The output is deterministic for a given set of options (weights come from a seeded
numpy Generator). --type sets the dtype of the layer matrices and of output.weight; the
token embedding uses --embd-type (default: the same as --type). Norm weights and biases are
always F32. By default output.weight is absent (tied to token_embd); --untied writes a
separate one. --arch qwen2 adds F32 q/k/v biases (and the file says qwen2, so RoPE runs in
NeoX mode).

The tokenizer is a minimal byte-level BPE ("gpt2" model, pre-tokenizer "gpt-2"): the 256 byte symbols of the GPT-2
byte table, merges learned from a fixed English sentence until the vocabulary has
vocab - 4 entries, then four control tokens <|endoftext|> (BOS and EOS), <|im_start|>,
<|im_end|>, <pad>. Row lengths must be multiples of 32 for the block types.
"""

import argparse
import collections
import os
import re
import sys

import numpy as np

import gguf

TYPES = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
    "q4_0": gguf.GGMLQuantizationType.Q4_0,
    "q4_1": gguf.GGMLQuantizationType.Q4_1,
}

FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
}

CORPUS = (
    "The quick brown fox jumps over the lazy dog. The capital of France is Paris, and "
    "the capital of Italy is Rome. There is a theory that the three of them went there "
    "together in 1999; then they were thinking that this is the thing to do."
)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def bytes_to_unicode():
    """The GPT-2 byte -> printable character table, in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def build_vocab(n_vocab):
    """tokens, token types, merges for a vocabulary of exactly n_vocab entries."""
    byte_syms = bytes_to_unicode()
    n_merges = n_vocab - 256 - len(SPECIALS)
    if n_merges < 0:
        raise ValueError(f"vocab must be at least {256 + len(SPECIALS)}")
    tokens = list(byte_syms)
    known = set(tokens)
    split = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+")
    words = collections.Counter()
    for piece in split.findall(CORPUS):
        words[tuple(byte_syms[b] for b in piece.encode("utf-8"))] += 1
    merges = []
    blocked = set()
    while len(merges) < n_merges:
        pairs = collections.Counter()
        for w, c in words.items():
            for i in range(len(w) - 1):
                if (w[i], w[i + 1]) not in blocked:
                    pairs[(w[i], w[i + 1])] += c
        if not pairs:
            break
        # most frequent pair, ties broken by the pair itself so the order is deterministic
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if a + b in known:
            blocked.add((a, b))
            continue
        merges.append(f"{a} {b}")
        tokens.append(a + b)
        known.add(a + b)
        new_words = collections.Counter()
        for w, c in words.items():
            out = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += c
        words = new_words
    # the corpus ran out of pairs: fill with unmerged filler tokens
    k = 0
    while len(tokens) < n_vocab - len(SPECIALS):
        tokens.append(f"[unused{k}]")
        k += 1
    types = [gguf.TokenType.NORMAL] * len(tokens)
    tokens += SPECIALS
    types += [gguf.TokenType.CONTROL] * len(SPECIALS)
    return tokens, types, merges


def encode_tensor(arr, type_name):
    """(data, raw_dtype) for GGUFWriter.add_tensor; arr is float32 shaped (out, in)."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if type_name == "f32":
        return arr, None
    if type_name == "f16":
        return arr.astype(np.float16), None
    qtype = TYPES[type_name]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if arr.shape[-1] % block != 0:
        raise ValueError(f"row length {arr.shape[-1]} is not a multiple of {block} for {type_name}")
    try:
        data = gguf.quants.quantize(arr, qtype)
    except NotImplementedError:
        sys.stderr.write(f"gguf cannot quantize {type_name}; writing F16 instead\n")
        return arr.astype(np.float16), None
    return data, qtype


def make(path, arch="llama", wtype="f32", embd_type=None, untied=False, seed=0, layers=2,
         dim=64, heads=4, kv_heads=2, ffn=128, vocab=300, ctx=256, rope_base=10000.0,
         rope_scale=None, eps=1e-5, pre="gpt-2"):
    if embd_type is None:
        embd_type = wtype
    if dim % heads != 0 or heads % kv_heads != 0:
        raise ValueError("dim must be a multiple of heads, heads a multiple of kv_heads")
    head_dim = dim // heads
    rng = np.random.default_rng(seed)

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm_weight():
        return (1.0 + 0.1 * rng.standard_normal(dim)).astype(np.float32)

    tensors = []  # (name, float32 array shaped (out, in) or (n,), dtype name)
    tensors.append(("token_embd.weight", normal((vocab, dim), 0.5), embd_type))
    for il in range(layers):
        p = f"blk.{il}."
        tensors.append((p + "attn_norm.weight", norm_weight(), "f32"))
        tensors.append((p + "attn_q.weight", normal((dim, dim), dim ** -0.5), wtype))
        tensors.append((p + "attn_k.weight", normal((kv_heads * head_dim, dim), dim ** -0.5), wtype))
        tensors.append((p + "attn_v.weight", normal((kv_heads * head_dim, dim), dim ** -0.5), wtype))
        if arch == "qwen2":
            tensors.append((p + "attn_q.bias", normal((dim,), 0.2), "f32"))
            tensors.append((p + "attn_k.bias", normal((kv_heads * head_dim,), 0.2), "f32"))
            tensors.append((p + "attn_v.bias", normal((kv_heads * head_dim,), 0.2), "f32"))
        tensors.append((p + "attn_output.weight", normal((dim, dim), dim ** -0.5), wtype))
        tensors.append((p + "ffn_norm.weight", norm_weight(), "f32"))
        tensors.append((p + "ffn_gate.weight", normal((ffn, dim), dim ** -0.5), wtype))
        tensors.append((p + "ffn_up.weight", normal((ffn, dim), dim ** -0.5), wtype))
        tensors.append((p + "ffn_down.weight", normal((dim, ffn), ffn ** -0.5), wtype))
    tensors.append(("output_norm.weight", norm_weight(), "f32"))
    if untied:
        tensors.append(("output.weight", normal((vocab, dim), 0.5), wtype))

    tokens, types, merges = build_vocab(vocab)

    tmp = path + ".tmp"
    w = gguf.GGUFWriter(tmp, arch)
    w.add_name(f"tiny-{arch}-{wtype}{'-untied' if untied else ''}")
    w.add_file_type(FILE_TYPES[wtype])
    w.add_context_length(ctx)
    w.add_embedding_length(dim)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(rope_base)
    if rope_scale is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope_scale)
    w.add_layer_norm_rms_eps(eps)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    eot = tokens.index("<|endoftext|>")
    w.add_bos_token_id(eot)
    w.add_eos_token_id(eot)
    w.add_add_bos_token(False)
    for name, arr, tname in tensors:
        data, raw = encode_tensor(arr, tname)
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description="write a tiny random Llama-family GGUF")
    ap.add_argument("out")
    ap.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    ap.add_argument("--type", choices=sorted(TYPES), default="f32")
    ap.add_argument("--embd-type", choices=sorted(TYPES), default=None)
    ap.add_argument("--untied", action="store_true", help="write a separate output.weight")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=300)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--rope-base", type=float, default=10000.0)
    ap.add_argument("--rope-scale", type=float, default=None, help="linear RoPE scaling factor")
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--pre", default="gpt-2", help="tokenizer.ggml.pre")
    a = ap.parse_args(argv)
    make(a.out, arch=a.arch, wtype=a.type, embd_type=a.embd_type, untied=a.untied, seed=a.seed,
         layers=a.layers, dim=a.dim, heads=a.heads, kv_heads=a.kv_heads, ffn=a.ffn,
         vocab=a.vocab, ctx=a.ctx, rope_base=a.rope_base, rope_scale=a.rope_scale, eps=a.eps,
         pre=a.pre)
    return 0


if __name__ == "__main__":
    sys.exit(main())
