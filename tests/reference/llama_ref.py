#!/usr/bin/env python3
"""llama_ref.py - an independent float64 numpy forward pass for Llama-family GGUF models.

This is the oracle the C engine's logits are compared with. It shares no code with the
engine: the file is read with the `gguf` package (gguf.GGUFReader) and every tensor is
dequantized with gguf.quants.dequantize, then everything is computed in float64.

Supported architectures:
  llama  RMSNorm, RoPE in "normal" mode, grouped-query causal attention, SwiGLU FFN.
  qwen2  the same block with q/k/v biases and RoPE in "NeoX" mode.

RoPE pairing. Hugging Face Llama checkpoints rotate the pairs (x[i], x[i + d/2]) of each head
("rotate_half"). When such a checkpoint is converted to GGUF for the `llama` architecture, the
converter permutes the rows of attn_q and attn_k per head (reshape to [heads, 2, d/2, in],
swap the middle axes), so that in the file the pair (x[i], x[i + d/2]) sits at rows
(2i, 2i+1). The GGUF `llama` graph therefore rotates ADJACENT pairs (x[2i], x[2i+1]) with
angle pos * base^(-2i/n_rot). The `qwen2` conversion keeps the Hugging Face row order and
its graph rotates (x[i], x[i + n_rot/2]) ("NeoX" mode) with the same angles.

Shapes. A GGUF tensor lists its dims as ne = [ne0, ne1] with ne0 the length of a row (the
fastest-varying index). A weight with ne = [n_in, n_out] is, as a numpy array, shaped
(n_out, n_in), and a layer computes y = W @ x (for a batch of rows: Y = X @ W.T).

Use:
  python3 tests/reference/llama_ref.py MODEL --ids 1,2,3 [--out FILE]
writes the float32 logits of every position, shape [n_ids, n_vocab], row-major little-endian
(to FILE, or prints the argmax and top logits of the last position without --out).
  python3 tests/reference/llama_ref.py MODEL --text "The capital of France is" -n 8
tokenizes the text with a plain byte-level BPE (enough for simple ASCII prompts) and
prints a greedy continuation.
"""

import argparse
import math
import re
import sys

import numpy as np

import gguf
from gguf.quants import dequantize


# ----------------------------------------------------------------------------------------
# metadata

def _field_value(field):
    """Python value of a GGUFReader field (scalar, string or array)."""
    if hasattr(field, "contents"):
        return field.contents()
    # older gguf releases: decode from the raw parts
    types = field.types
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.STRING and len(types) == 1:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    if types[0] == gguf.GGUFValueType.ARRAY:
        if len(types) > 1 and types[1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    return field.parts[field.data[0]].tolist()[0]


class Config:
    """Hyperparameters read from the {arch}.* metadata."""

    def __init__(self, meta, arch):
        def get(key, default=None, required=True):
            full = f"{arch}.{key}"
            if full in meta:
                return meta[full]
            if required and default is None:
                raise ValueError(f"missing metadata key {full}")
            return default

        self.arch = arch
        self.n_layer = int(get("block_count"))
        self.n_embd = int(get("embedding_length"))
        self.n_ff = int(get("feed_forward_length"))
        self.n_head = int(get("attention.head_count"))
        self.n_head_kv = int(get("attention.head_count_kv", self.n_head))
        self.head_dim = int(get("attention.key_length", self.n_embd // self.n_head))
        self.head_dim_v = int(get("attention.value_length", self.head_dim))
        self.eps = float(get("attention.layer_norm_rms_epsilon"))
        self.rope_base = float(get("rope.freq_base", 10000.0))
        self.n_rot = int(get("rope.dimension_count", self.head_dim))
        self.rope_scaling = str(get("rope.scaling.type", "none"))
        factor = float(get("rope.scaling.factor", 0.0))
        if self.rope_scaling == "none" and factor > 0.0 and factor != 1.0:
            self.rope_scaling = "linear"  # a factor without a type means linear
        if self.rope_scaling == "linear":
            self.rope_pos_scale = 1.0 / factor if factor > 0.0 else 1.0
        elif self.rope_scaling in ("none", ""):
            self.rope_pos_scale = 1.0
        else:
            raise ValueError(f"rope scaling '{self.rope_scaling}' is not implemented")
        if arch == "llama":
            self.rope_neox = False
        elif arch == "qwen2":
            self.rope_neox = True
        else:
            raise ValueError(f"architecture '{arch}' is not supported")
        if self.n_head % self.n_head_kv != 0:
            raise ValueError("head_count is not a multiple of head_count_kv")
        if self.n_rot > self.head_dim or self.n_rot % 2 != 0:
            raise ValueError("rope.dimension_count must be even and at most the head size")

    def __repr__(self):
        return (f"Config(arch={self.arch}, n_layer={self.n_layer}, n_embd={self.n_embd}, "
                f"n_ff={self.n_ff}, n_head={self.n_head}, n_head_kv={self.n_head_kv}, "
                f"head_dim={self.head_dim}, n_rot={self.n_rot}, base={self.rope_base}, "
                f"eps={self.eps}, neox={self.rope_neox}, pos_scale={self.rope_pos_scale})")


class Model:
    """Config, float64 weights, and the tokenizer metadata of one GGUF file."""

    def __init__(self, config, weights, meta):
        self.config = config
        self.w = weights  # name -> float64 array, numpy shape (ne1, ne0)
        self.meta = meta
        self.n_vocab = self.w["token_embd.weight"].shape[0]


def load(path):
    """Read a GGUF file and dequantize every tensor to float64."""
    reader = gguf.GGUFReader(path)
    meta = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        meta[name] = _field_value(field)
    arch = meta.get("general.architecture")
    if arch is None:
        raise ValueError("missing general.architecture")
    config = Config(meta, arch)

    weights = {}
    for t in reader.tensors:
        ne = [int(x) for x in t.shape]  # gguf order, ne0 first
        arr = dequantize(t.data, t.tensor_type)
        arr = np.asarray(arr, dtype=np.float64).reshape(list(reversed(ne)))
        weights[t.name] = arr
    if "output.weight" not in weights:
        weights["output.weight"] = weights["token_embd.weight"]  # tied embeddings
    return Model(config, weights, meta)


# ----------------------------------------------------------------------------------------
# layers (x is [n_tokens, features], float64)

def rms_norm(x, weight, eps):
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(ms + eps) * weight


def linear(x, w, b=None):
    y = x @ w.T  # w is (out, in)
    if b is not None:
        y = y + b
    return y


def rope_angles(cfg, n_tokens, freq_factors=None):
    """cos and sin, each [n_tokens, n_rot/2], for positions 0..n_tokens-1."""
    half = cfg.n_rot // 2
    inv_freq = cfg.rope_base ** (-2.0 * np.arange(half, dtype=np.float64) / cfg.n_rot)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors[:half]
    pos = np.arange(n_tokens, dtype=np.float64) * cfg.rope_pos_scale
    ang = np.outer(pos, inv_freq)
    return np.cos(ang), np.sin(ang)


def rope(x, cos, sin, n_rot, neox):
    """Rotate the first n_rot dims of each head. x: [n_tokens, n_heads, head_dim]."""
    out = x.copy()
    c = cos[:, None, :]
    s = sin[:, None, :]
    half = n_rot // 2
    if neox:
        a = x[:, :, 0:half]
        b = x[:, :, half:n_rot]
        out[:, :, 0:half] = a * c - b * s
        out[:, :, half:n_rot] = a * s + b * c
    else:
        a = x[:, :, 0:n_rot:2]
        b = x[:, :, 1:n_rot:2]
        out[:, :, 0:n_rot:2] = a * c - b * s
        out[:, :, 1:n_rot:2] = a * s + b * c
    return out


def attention(q, k, v, n_head, n_head_kv):
    """Causal grouped-query attention. q: [T, n_head, d], k: [T, n_head_kv, d],
    v: [T, n_head_kv, dv]. Returns [T, n_head * dv]."""
    T, _, d = q.shape
    group = n_head // n_head_kv
    scale = 1.0 / math.sqrt(d)
    mask = np.triu(np.ones((T, T), dtype=bool), k=1)  # True above the diagonal: future
    out = np.empty((T, n_head, v.shape[2]), dtype=np.float64)
    for h in range(n_head):
        kh = h // group
        scores = (q[:, h, :] @ k[:, kh, :].T) * scale  # [T, T]
        scores[mask] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        out[:, h, :] = p @ v[:, kh, :]
    return out.reshape(T, -1)


def silu(x):
    return x / (1.0 + np.exp(-x))


def logits(model, ids):
    """Logits of every position for the token ids, float64 [len(ids), n_vocab]."""
    cfg = model.config
    w = model.w
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError("ids must be a non-empty 1-D sequence")
    if ids.min() < 0 or ids.max() >= model.n_vocab:
        raise ValueError("token id out of range")
    T = len(ids)
    cos, sin = rope_angles(cfg, T, w.get("rope_freqs.weight"))

    x = w["token_embd.weight"][ids].copy()  # [T, n_embd]
    for il in range(cfg.n_layer):
        p = f"blk.{il}."
        h = rms_norm(x, w[p + "attn_norm.weight"], cfg.eps)
        q = linear(h, w[p + "attn_q.weight"], w.get(p + "attn_q.bias"))
        k = linear(h, w[p + "attn_k.weight"], w.get(p + "attn_k.bias"))
        v = linear(h, w[p + "attn_v.weight"], w.get(p + "attn_v.bias"))
        q = q.reshape(T, cfg.n_head, cfg.head_dim)
        k = k.reshape(T, cfg.n_head_kv, cfg.head_dim)
        v = v.reshape(T, cfg.n_head_kv, cfg.head_dim_v)
        q = rope(q, cos, sin, cfg.n_rot, cfg.rope_neox)
        k = rope(k, cos, sin, cfg.n_rot, cfg.rope_neox)
        a = attention(q, k, v, cfg.n_head, cfg.n_head_kv)
        x = x + linear(a, w[p + "attn_output.weight"], w.get(p + "attn_output.bias"))

        h = rms_norm(x, w[p + "ffn_norm.weight"], cfg.eps)
        g = linear(h, w[p + "ffn_gate.weight"])
        u = linear(h, w[p + "ffn_up.weight"])
        x = x + linear(silu(g) * u, w[p + "ffn_down.weight"])

    x = rms_norm(x, w["output_norm.weight"], cfg.eps)
    return linear(x, w["output.weight"], w.get("output.bias"))


def greedy(model, ids, n):
    """Greedy continuation of n tokens (recomputes the whole sequence per token)."""
    seq = list(ids)
    out = []
    for _ in range(n):
        nxt = int(np.argmax(logits(model, seq)[-1]))
        out.append(nxt)
        seq.append(nxt)
    return out


# ----------------------------------------------------------------------------------------
# a plain byte-level BPE, enough to turn simple ASCII prompts into ids and ids into text

def _bytes_to_unicode():
    """The GPT-2 byte <-> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_B2U = _bytes_to_unicode()
_U2B = {c: b for b, c in _B2U.items()}


class ByteBPE:
    """Byte-level BPE from tokenizer.ggml.tokens / tokenizer.ggml.merges. The pre-split is a
    simplified GPT-2 rule (words with their leading space, single digits, punctuation runs,
    whitespace), which is exact for plain ASCII prompts of words, digits and punctuation."""

    _split = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")

    def __init__(self, meta):
        if meta.get("tokenizer.ggml.model") != "gpt2":
            raise ValueError("only the gpt2 (byte-level BPE) tokenizer is implemented here")
        self.tokens = list(meta["tokenizer.ggml.tokens"])
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {}
        for r, m in enumerate(meta.get("tokenizer.ggml.merges", [])):
            a, b = m.split(" ", 1)
            self.ranks[(a, b)] = r

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best = None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        return parts

    def encode(self, text):
        ids = []
        for piece in self._split.findall(text):
            word = "".join(_B2U[b] for b in piece.encode("utf-8"))
            for p in self._bpe(word):
                ids.append(self.index[p])
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            tok = self.tokens[i]
            if all(c in _U2B for c in tok):
                out.extend(_U2B[c] for c in tok)
            else:
                out.extend(tok.encode("utf-8"))
        return out.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="numpy float64 reference forward pass")
    ap.add_argument("model")
    ap.add_argument("--ids", help="comma-separated token ids")
    ap.add_argument("--text", help="prompt text (byte-level BPE models only)")
    ap.add_argument("--out", help="write float32 logits [n_ids, n_vocab] here")
    ap.add_argument("-n", type=int, default=0, help="greedy tokens to generate and print")
    args = ap.parse_args(argv)

    model = load(args.model)
    if args.ids:
        ids = [int(s) for s in args.ids.split(",") if s.strip()]
    elif args.text is not None:
        ids = ByteBPE(model.meta).encode(args.text)
    else:
        ap.error("give --ids or --text")
    lg = logits(model, ids)
    if args.out:
        lg.astype("<f4").tofile(args.out)
    else:
        last = lg[-1]
        top = np.argsort(-last)[:5]
        print("ids:", ",".join(str(i) for i in ids))
        print("top-5 of last position:", ", ".join(f"{int(t)}:{last[t]:.4f}" for t in top))
    if args.n > 0:
        gen = greedy(model, ids, args.n)
        print("generated ids:", " ".join(str(i) for i in gen))
        if model.meta.get("tokenizer.ggml.model") == "gpt2":
            bpe = ByteBPE(model.meta)
            print("text:", repr(bpe.decode(ids) + bpe.decode(gen)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
