#!/usr/bin/env python3
"""make_synthetic_model.py - write a Llama-shaped GGUF model of any size with random weights.

  python3 scripts/make_synthetic_model.py OUT.gguf [--layers 26] [--dim 3072] [--ffn 8192]
      [--heads 24] [--kv-heads 8] [--vocab 32000] [--type f16|f32] [--seed 0] [--ctx 2048]

For measuring memory and time of the model-writing commands on large shapes (the defaults
are a ~3B-parameter Llama). Weights are normal with std 1/sqrt(fan-in) (embeddings 0.5),
norms 1 + 0.1 N(0, 1); the output head is tied to token_embd. The tokenizer is the tiny
test tokenizer of tests/reference/make_tiny_model.py (byte-level BPE, filler tokens up to the
vocabulary size), so text tokenizes and calibration runs.

The file is written tensor by tensor (header first, then each tensor generated and written),
so the script holds one tensor at a time whatever the model's size. The result is
deterministic for a given set of options. Written to OUT.tmp, then renamed.
"""

import argparse
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from make_tiny_model import build_vocab  # noqa: E402  (tokenizer of the test models)

ALIGN = 32
# GGUF metadata value types and tensor dtypes
V_U32, V_I32, V_F32, V_BOOL, V_STR, V_ARR = 4, 5, 6, 7, 8, 9
DTYPES = {"f32": (0, np.float32, 4), "f16": (1, np.float16, 2)}
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3


def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = gstr(key) + struct.pack("<I", vtype)
    if vtype == V_U32:
        return out + struct.pack("<I", value)
    if vtype == V_F32:
        return out + struct.pack("<f", value)
    if vtype == V_BOOL:
        return out + struct.pack("<B", 1 if value else 0)
    if vtype == V_STR:
        return out + gstr(value)
    etype, items = value
    out += struct.pack("<IQ", etype, len(items))
    if etype == V_STR:
        return out + b"".join(gstr(x) for x in items)
    if etype == V_I32:
        return out + np.asarray(items, dtype="<i4").tobytes()
    raise ValueError(etype)


def plan(a):
    """[(name, shape (out, in) or (n,), kind, std)] in file order."""
    head_dim = a.dim // a.heads
    kv_dim = a.kv_heads * head_dim
    t = [("token_embd.weight", (a.vocab, a.dim), "w", 0.5)]
    for il in range(a.layers):
        p = f"blk.{il}."
        t += [(p + "attn_norm.weight", (a.dim,), "norm", 0.1),
              (p + "attn_q.weight", (a.dim, a.dim), "w", a.dim ** -0.5),
              (p + "attn_k.weight", (kv_dim, a.dim), "w", a.dim ** -0.5),
              (p + "attn_v.weight", (kv_dim, a.dim), "w", a.dim ** -0.5),
              (p + "attn_output.weight", (a.dim, a.dim), "w", a.dim ** -0.5),
              (p + "ffn_norm.weight", (a.dim,), "norm", 0.1),
              (p + "ffn_gate.weight", (a.ffn, a.dim), "w", a.dim ** -0.5),
              (p + "ffn_up.weight", (a.ffn, a.dim), "w", a.dim ** -0.5),
              (p + "ffn_down.weight", (a.dim, a.ffn), "w", a.ffn ** -0.5)]
    t.append(("output_norm.weight", (a.dim,), "norm", 0.1))
    return t


def metadata(a):
    tokens, types, merges = build_vocab(a.vocab)
    types = [TOKEN_CONTROL if int(x) == 3 else TOKEN_NORMAL for x in types]
    eot = tokens.index("<|endoftext|>")
    head_dim = a.dim // a.heads
    return [
        kv("general.architecture", V_STR, "llama"),
        kv("general.name", V_STR, f"synthetic-llama-{a.layers}x{a.dim}-{a.type}"),
        kv("general.file_type", V_U32, 0 if a.type == "f32" else 1),
        kv("llama.context_length", V_U32, a.ctx),
        kv("llama.embedding_length", V_U32, a.dim),
        kv("llama.block_count", V_U32, a.layers),
        kv("llama.feed_forward_length", V_U32, a.ffn),
        kv("llama.attention.head_count", V_U32, a.heads),
        kv("llama.attention.head_count_kv", V_U32, a.kv_heads),
        kv("llama.rope.dimension_count", V_U32, head_dim),
        kv("llama.rope.freq_base", V_F32, 10000.0),
        kv("llama.attention.layer_norm_rms_epsilon", V_F32, 1e-5),
        kv("llama.vocab_size", V_U32, a.vocab),
        kv("tokenizer.ggml.model", V_STR, "gpt2"),
        kv("tokenizer.ggml.pre", V_STR, "gpt-2"),
        kv("tokenizer.ggml.tokens", V_ARR, (V_STR, tokens)),
        kv("tokenizer.ggml.token_type", V_ARR, (V_I32, types)),
        kv("tokenizer.ggml.merges", V_ARR, (V_STR, merges)),
        kv("tokenizer.ggml.bos_token_id", V_U32, eot),
        kv("tokenizer.ggml.eos_token_id", V_U32, eot),
        kv("tokenizer.ggml.add_bos_token", V_BOOL, False),
    ]


def pad(n):
    return (ALIGN - n % ALIGN) % ALIGN


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=26)
    ap.add_argument("--dim", type=int, default=3072)
    ap.add_argument("--ffn", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=24)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--type", choices=sorted(DTYPES), default="f16")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.dim % a.heads or a.heads % a.kv_heads or a.dim % 32 or a.ffn % 32:
        ap.error("dim must be a multiple of heads and of 32, heads of kv-heads, ffn of 32")
    dt_id, np_dt, esize = DTYPES[a.type]
    tensors = plan(a)
    kvs = metadata(a)

    infos, offset = [], 0
    for name, shape, kind, _ in tensors:
        t_id = 0 if kind == "norm" else dt_id
        ne = list(reversed(shape))  # GGUF: ne[0] is the row length
        infos.append(gstr(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne) +
                     struct.pack("<IQ", t_id, offset))
        nbytes = int(np.prod(shape)) * (4 if kind == "norm" else esize)
        offset += nbytes + pad(nbytes)

    rng = np.random.default_rng(a.seed)
    tmp = a.out + ".tmp"
    n_params = 0
    with open(tmp, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
        for b in kvs:
            f.write(b)
        for b in infos:
            f.write(b)
        f.write(b"\0" * pad(f.tell()))
        for name, shape, kind, std in tensors:
            if kind == "norm":
                arr = (1.0 + std * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
            else:
                # row blocks keep the float32 temporary small for large matrices
                rows = max(1, (64 << 20) // (4 * shape[1]))
                for r in range(0, shape[0], rows):
                    blk = rng.standard_normal((min(rows, shape[0] - r), shape[1]), dtype=np.float32)
                    blk *= std
                    f.write(blk.astype(np_dt).tobytes())
                arr = None
            if arr is not None:
                f.write(arr.tobytes())
            nbytes = int(np.prod(shape)) * (4 if kind == "norm" else esize)
            f.write(b"\0" * pad(nbytes))
            n_params += int(np.prod(shape))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, a.out)
    print(f"wrote {a.out}: {n_params} parameters, {os.path.getsize(a.out)} bytes")


if __name__ == "__main__":
    main()
