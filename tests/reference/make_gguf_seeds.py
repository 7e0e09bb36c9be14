#!/usr/bin/env python3
"""Write the small valid GGUF seed files in tests/data/gguf-corpus/.

They seed the GGUF parser fuzzer (tests/fuzz/fuzz_gguf.c) and tests/test_gguf.c checks that
each one parses. They are written with the `gguf` package from PyPI, a writer independent of
our reader. Deterministic: the same package version writes the same bytes.

Regenerate (from the repository root):
    pip install gguf numpy
    python3 tests/reference/make_gguf_seeds.py
"""
import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gguf-corpus")


def write(name, fill, arch="llama", alignment=None):
    path = os.path.join(OUT, name)
    w = GGUFWriter(path, arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)  # sets general.alignment and pads to it
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    size = os.path.getsize(path)
    assert size < 4096, f"{name} is {size} bytes"
    return path


def tiny_llama(w):
    """A miniature llama model: hyperparameters, a tokenizer and one tensor of each type."""
    rng = np.random.default_rng(1)
    w.add_uint32("llama.block_count", 1)
    w.add_uint32("llama.context_length", 64)
    w.add_uint32("llama.embedding_length", 32)
    w.add_uint32("llama.attention.head_count", 2)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b", "ab", "\u0120c"])
    w.add_array("tokenizer.ggml.token_type", [3, 1, 1, 1, 1])
    w.add_array("tokenizer.ggml.merges", ["a b"])
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    w.add_tensor("output_norm.weight", rng.standard_normal(32).astype(np.float32))
    w.add_tensor("blk.0.ffn_norm.weight", rng.standard_normal(32).astype(np.float16))
    for name, qt in (("token_embd.weight", GGMLQuantizationType.Q8_0),
                     ("blk.0.attn_q.weight", GGMLQuantizationType.Q4_1)):
        x = rng.standard_normal((4, 32)).astype(np.float32)
        w.add_tensor(name, quantize(x, qt), raw_dtype=qt)


def every_type(w):
    """Metadata only: every scalar type, strings, numeric, string and nested arrays."""
    w.add_uint8("t.u8", 250)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 65000)
    w.add_int16("t.i16", -32000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.25)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "h\u00e9llo")
    w.add_uint64("t.u64", 1 << 60)
    w.add_int64("t.i64", -(1 << 60))
    w.add_float64("t.f64", -1.5e300)
    w.add_array("t.arr_f32", [1.0, 2.0, 3.5])
    w.add_array("t.arr_str", ["x", "", "yz"])
    w.add_array("t.arr_nested", [[1, 2], [3], [[4], [5, 6]]])
    w.add_array("t.arr_empty", [])


def aligned64(w):
    """general.alignment 64 with tensors of several shapes, including a 3-d one."""
    rng = np.random.default_rng(2)
    w.add_tensor("a", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("b", rng.standard_normal((2, 2, 4)).astype(np.float16))
    x = rng.standard_normal((2, 64)).astype(np.float32)
    w.add_tensor("c", quantize(x, GGMLQuantizationType.Q8_0),
                 raw_dtype=GGMLQuantizationType.Q8_0)


def main():
    os.makedirs(OUT, exist_ok=True)
    write("tiny_llama.gguf", tiny_llama)
    write("every_type.gguf", every_type, arch="test")
    write("aligned64.gguf", aligned64, arch="test", alignment=64)
    # Version 2 has the same layout as version 3; only the version field differs.
    src = write("tiny_llama_v2.gguf", tiny_llama)
    with open(src, "r+b") as f:
        f.seek(4)
        f.write((2).to_bytes(4, "little"))
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)))


if __name__ == "__main__":
    main()
