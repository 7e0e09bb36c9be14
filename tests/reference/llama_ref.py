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

Engine emulation (options of logits(); both off by default, which is the exact reference):
  act_quant  Before every product with a block-quantized weight, the f32 input row is replaced
             by its activation blocks, as the engine's integer dot products see it:
               weights Q4_0, Q5_0, Q8_0 -> Q8_0 blocks of 32: amax in f32, d = amax / 127,
                 id = 1 / d (0 when d = 0), q = roundf(x * id) (half away from zero) clamped
                 to [-127, 127]; the block holds d rounded to f16, so x' = f16(d) * q.
               weights Q4_1, Q5_1 -> Q8_1: the same d and q, plus s = f16(f16(d) * sum(q))
                 (from the stored scale; ggml's reference uses the unrounded d there). The
                 dot is d_w * f16(d) * sum(qw * qx) + m_w * s: the weight min meets the
                 rounded s, not f16(d) * sum(q). So y = W . x' plus, per block,
                 m_w * (s - f16(d) * sum(q)).
               weights Q2_K .. Q6_K -> Q8_K blocks of 256: max = the element of largest
                 magnitude (first on ties, with its sign), iscale = -127 / max (f32),
                 q = round-half-even(iscale * x clamped to [-127, 127]), d = 1 / iscale kept
                 in f32 (all zero when max = 0 or iscale overflows). The K-quant dot is exact
                 in these terms (its min part uses integer block sums), so y = W . (d * q).
               float weights (F32, F16, BF16): the input stays f32 (rounded from float64).
             The quantizer's arithmetic is float32 as in the engine; the products and
             everything else stay float64.
  kv_f16     K (after RoPE) and V are rounded to f16 when stored in the cache, as the
             engine's default f16 KV cache does.

Use:
  python3 tests/reference/llama_ref.py MODEL --ids 1,2,3 [--out FILE] [--act-quant] [--kv-f16]
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

    def __init__(self, config, weights, meta, types=None, mins=None):
        self.config = config
        self.w = weights  # name -> float64 array, numpy shape (ne1, ne0)
        self.meta = meta
        self.types = types or {}  # name -> GGMLQuantizationType of the stored tensor
        self.mins = mins or {}  # name of a Q4_1/Q5_1 tensor -> float64 [ne1, ne0 / 32] block mins
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
    types = {}
    mins = {}
    for t in reader.tensors:
        ne = [int(x) for x in t.shape]  # gguf order, ne0 first
        arr = dequantize(t.data, t.tensor_type)
        arr = np.asarray(arr, dtype=np.float64).reshape(list(reversed(ne)))
        weights[t.name] = arr
        types[t.name] = gguf.GGMLQuantizationType(int(t.tensor_type))
        if types[t.name] in _MIN_BLOCK_BYTES:
            mins[t.name] = _block_mins(t.data, _MIN_BLOCK_BYTES[types[t.name]], ne)
    if "output.weight" not in weights:
        weights["output.weight"] = weights["token_embd.weight"]  # tied embeddings
        types["output.weight"] = types["token_embd.weight"]
        if "token_embd.weight" in mins:
            mins["output.weight"] = mins["token_embd.weight"]
    return Model(config, weights, meta, types, mins)


# Q4_1 and Q5_1 blocks of 32 start with f16 d, f16 m; bytes per block:
_MIN_BLOCK_BYTES = {
    gguf.GGMLQuantizationType.Q4_1: 20,
    gguf.GGMLQuantizationType.Q5_1: 24,
}


def _block_mins(data, block_bytes, ne):
    """The f16 min m of every block of a Q4_1/Q5_1 tensor, float64 [rows, ne0 / 32]."""
    raw = np.ascontiguousarray(np.asarray(data, dtype=np.uint8)).reshape(-1, block_bytes)
    m = raw[:, 2:4].copy().view("<f2").astype(np.float64)
    return m.reshape(-1, ne[0] // 32)


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


# ----------------------------------------------------------------------------------------
# the engine's activation formats (see "Engine emulation" above)

_Q = gguf.GGMLQuantizationType
ACT_Q8_0 = "q8_0"
ACT_Q8_1 = "q8_1"
ACT_Q8_K = "q8_k"
ACT_F32 = "f32"
_ACT_TYPE = {
    _Q.Q4_0: ACT_Q8_0, _Q.Q5_0: ACT_Q8_0, _Q.Q8_0: ACT_Q8_0,
    _Q.Q4_1: ACT_Q8_1, _Q.Q5_1: ACT_Q8_1,
    _Q.Q2_K: ACT_Q8_K, _Q.Q3_K: ACT_Q8_K, _Q.Q4_K: ACT_Q8_K, _Q.Q5_K: ACT_Q8_K,
    _Q.Q6_K: ACT_Q8_K,
    _Q.F32: ACT_F32, _Q.F16: ACT_F32, _Q.BF16: ACT_F32,
}


def act_type(wtype):
    """Activation format the engine pairs with weights of dtype wtype."""
    if wtype not in _ACT_TYPE:
        raise ValueError(f"no engine kernel for weights of type {wtype.name}")
    return _ACT_TYPE[wtype]


def _roundf(v):
    """C roundf (half away from zero) of float32 values, exactly: |v| + 0.5 is exact in
    float64 for every float32 |v| < 2^52, which the float32 products x * (1 / d) never exceed."""
    a = np.abs(v.astype(np.float64))
    return np.copysign(np.floor(a + 0.5), v)


def quant_q8_0(x):
    """Q8_0 (and Q8_1) blocks of the rows of x [T, n] (n a multiple of 32).
    Returns (q float64 [T, n/32, 32], the stored f16 d as float64 [T, n/32])."""
    T, n = x.shape
    if n % 32 != 0:
        raise ValueError(f"row length {n} is not a multiple of 32")
    xb = x.astype(np.float32).reshape(T, n // 32, 32)
    amax = np.abs(xb).max(axis=2)
    d = amax / np.float32(127.0)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    q = np.clip(_roundf(xb * inv[:, :, None]), -127.0, 127.0)
    d16 = d.astype(np.float16).astype(np.float64)
    return q, d16


def quant_q8_k(x):
    """Q8_K blocks of the rows of x [T, n] (n a multiple of 256).
    Returns (q float64 [T, n/256, 256], d float64 [T, n/256])."""
    T, n = x.shape
    if n % 256 != 0:
        raise ValueError(f"row length {n} is not a multiple of 256")
    xb = x.astype(np.float32).reshape(T, n // 256, 256)
    first = np.argmax(np.abs(xb), axis=2)  # first element of largest magnitude
    mx = np.take_along_axis(xb, first[:, :, None], axis=2)[:, :, 0]
    with np.errstate(divide="ignore", over="ignore"):
        iscale = (np.float32(-127.0) / np.where(mx == 0, np.float32(1.0), mx)).astype(np.float32)
        zero = (mx == 0) | np.isinf(iscale)
        iscale = np.where(zero, np.float32(0.0), iscale).astype(np.float32)
        d = np.where(zero, np.float32(0.0),
                     np.float32(1.0) / np.where(zero, np.float32(1.0), iscale)).astype(np.float32)
    prod = np.clip(xb * iscale[:, :, None], np.float32(-127.0), np.float32(127.0))  # float32
    q = np.rint(prod).astype(np.float64)  # rint: halves to even
    return q, d.astype(np.float64)


def qlinear(model, x, name, bias=None, act_quant=False):
    """y = W x (+ b) for the weight `name`, with the engine's activation format when
    act_quant is set."""
    w = model.w[name]
    b = model.w.get(bias) if bias is not None else None
    if not act_quant:
        return linear(x, w, b)
    kind = act_type(model.types[name])
    if kind == ACT_F32:
        return linear(x.astype(np.float32).astype(np.float64), w, b)
    T, n = x.shape
    if kind == ACT_Q8_K:
        q, d = quant_q8_k(x)
        return linear((q * d[:, :, None]).reshape(T, n), w, b)
    q, d16 = quant_q8_0(x)
    y = linear((q * d16[:, :, None]).reshape(T, n), w, b)
    if kind == ACT_Q8_1:
        # the engine's min term uses s = f16(f16(d) * sum(q)); the f32 product is exact
        sq = q.sum(axis=2)  # exact small integers
        s16 = (d16 * sq).astype(np.float16).astype(np.float64)
        y = y + (s16 - d16 * sq) @ model.mins[name].T
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


def _f16(a):
    return a.astype(np.float16).astype(np.float64)


def logits(model, ids, act_quant=False, kv_f16=False):
    """Logits of every position for the token ids, float64 [len(ids), n_vocab].
    act_quant and kv_f16 emulate the engine's quantized activations and f16 KV cache."""
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
        q = qlinear(model, h, p + "attn_q.weight", p + "attn_q.bias", act_quant)
        k = qlinear(model, h, p + "attn_k.weight", p + "attn_k.bias", act_quant)
        v = qlinear(model, h, p + "attn_v.weight", p + "attn_v.bias", act_quant)
        q = q.reshape(T, cfg.n_head, cfg.head_dim)
        k = k.reshape(T, cfg.n_head_kv, cfg.head_dim)
        v = v.reshape(T, cfg.n_head_kv, cfg.head_dim_v)
        q = rope(q, cos, sin, cfg.n_rot, cfg.rope_neox)
        k = rope(k, cos, sin, cfg.n_rot, cfg.rope_neox)
        if kv_f16:
            k = _f16(k)
            v = _f16(v)
        a = attention(q, k, v, cfg.n_head, cfg.n_head_kv)
        x = x + qlinear(model, a, p + "attn_output.weight", p + "attn_output.bias", act_quant)

        h = rms_norm(x, w[p + "ffn_norm.weight"], cfg.eps)
        g = qlinear(model, h, p + "ffn_gate.weight", None, act_quant)
        u = qlinear(model, h, p + "ffn_up.weight", None, act_quant)
        x = x + qlinear(model, silu(g) * u, p + "ffn_down.weight", None, act_quant)

    x = rms_norm(x, w["output_norm.weight"], cfg.eps)
    return qlinear(model, x, "output.weight", "output.bias", act_quant)


def greedy(model, ids, n, act_quant=False, kv_f16=False):
    """Greedy continuation of n tokens (recomputes the whole sequence per token)."""
    seq = list(ids)
    out = []
    for _ in range(n):
        nxt = int(np.argmax(logits(model, seq, act_quant, kv_f16)[-1]))
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
    ap.add_argument("--act-quant", action="store_true",
                    help="emulate the engine's quantized activations (Q8_0/Q8_1/Q8_K)")
    ap.add_argument("--kv-f16", action="store_true", help="emulate an f16 KV cache")
    args = ap.parse_args(argv)

    model = load(args.model)
    if args.ids:
        ids = [int(s) for s in args.ids.split(",") if s.strip()]
    elif args.text is not None:
        ids = ByteBPE(model.meta).encode(args.text)
    else:
        ap.error("give --ids or --text")
    lg = logits(model, ids, args.act_quant, args.kv_f16)
    if args.out:
        lg.astype("<f4").tofile(args.out)
    else:
        last = lg[-1]
        top = np.argsort(-last)[:5]
        print("ids:", ",".join(str(i) for i in ids))
        print("top-5 of last position:", ", ".join(f"{int(t)}:{last[t]:.4f}" for t in top))
    if args.n > 0:
        gen = greedy(model, ids, args.n, args.act_quant, args.kv_f16)
        print("generated ids:", " ".join(str(i) for i in gen))
        if model.meta.get("tokenizer.ggml.model") == "gpt2":
            bpe = ByteBPE(model.meta)
            print("text:", repr(bpe.decode(ids) + bpe.decode(gen)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
