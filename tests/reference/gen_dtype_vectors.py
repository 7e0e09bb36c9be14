#!/usr/bin/env python3
"""gen_dtype_vectors.py - reference vectors for tests/test_dtype.c.

The oracle is independent of the C code: blocks are dequantized with the `gguf` package's own
numpy implementation (gguf.quants.dequantize), reference quantization uses
gguf.quants.quantize, and the half-precision conversions use numpy (f16) or integer
round-to-nearest-even arithmetic in numpy (bf16).

Regenerate (from the repository root; needs numpy and the `gguf` package from PyPI):
    python3 tests/reference/gen_dtype_vectors.py [tests/data/dtype_vectors.bin]
The output is deterministic for a given numpy / gguf version (seeded RNG).

File format (all integers little-endian):
    header   : magic "SLMDTVEC" (8 bytes), u32 version (= 1), u32 section count
    section  : u32 kind, u32 type id (GGUF/ggml type id, 0 if none), u32 count,
               u32 block_size, u32 block_bytes, u32 payload_bytes, then payload_bytes bytes.
    block_size / block_bytes are the values gguf.constants.GGML_QUANT_SIZES gives for the type
    (0 where no type applies). Kinds:
      1 DEQUANT      count blocks: count*block_bytes raw block bytes, then
                     count*block_size f32 expected values (gguf.quants.dequantize)
      2 QUANT        count elements: count f32 inputs, then (count/block_size)*block_bytes
                     bytes expected from gguf.quants.quantize
      3 F16_TO_F32   count = 65536: for every f16 bit pattern 0..65535, the f32 bits of its
                     value (numpy) shifted right by 8, as a 3-byte little-endian integer (the
                     low 13 bits of an f16 value widened to f32 are always zero, so this is
                     lossless and keeps the file small)
      4 F32_TO_F16   count values: count u32 f32 bits, then count u16 f16 bits (numpy astype)
      5 F32_TO_BF16  count values: count u32 f32 bits, then count u16 bf16 bits (integer
                     round to nearest even; NaN -> quiet NaN keeping sign and top bits)
      6 SIZES        count entries of u32 type id, u32 block_size, u32 block_bytes for every
                     type id the C enum names, as GGML_QUANT_SIZES lists them
"""
import struct
import sys

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf import quants

MAGIC = b"SLMDTVEC"
VERSION = 1
K_DEQUANT, K_QUANT, K_F16_TO_F32, K_F32_TO_F16, K_F32_TO_BF16, K_SIZES = 1, 2, 3, 4, 5, 6

# Byte offsets of the f16 scale fields inside one block of each quantized type.
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}
SMALL_TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
K_TYPES = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
# Every type id of the C enum slm_dtype.
ENUM_TYPES = [T.F32, T.F16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q8_1, T.Q2_K, T.Q3_K,
              T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K, T.I8, T.I16, T.I32, T.I64, T.F64, T.BF16]

rng = np.random.default_rng(20240607)
sections = []


def add(kind, type_id, count, block_size, block_bytes, payload):
    sections.append(struct.pack("<6I", kind, type_id, count, block_size, block_bytes,
                                len(payload)) + payload)


def random_f16_scales(n):
    """Finite f16 scales with magnitudes from 1e-4 to 1 and random signs."""
    mag = 10.0 ** rng.uniform(-4.0, 0.0, size=n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return (mag * sign).astype(np.float16).view(np.uint16)


def set_f16(blocks, offsets, bits):
    """Write f16 bit patterns (one per block, or a scalar) at each offset of every block."""
    for off in offsets:
        b = np.broadcast_to(np.asarray(bits, dtype=np.uint16), (blocks.shape[0],))
        blocks[:, off] = (b & 0xFF).astype(np.uint8)
        blocks[:, off + 1] = (b >> 8).astype(np.uint8)


def dequant_section(qtype, n_random):
    block_size, block_bytes = GGML_QUANT_SIZES[qtype]
    offs = F16_FIELDS[qtype]
    parts = []
    # random bytes with sane finite scales
    r = rng.integers(0, 256, size=(n_random, block_bytes), dtype=np.uint8)
    for off in offs:
        set_f16(r[:, :], [off], random_f16_scales(n_random))
    parts.append(r)
    # all-zero block
    parts.append(np.zeros((1, block_bytes), dtype=np.uint8))
    # largest finite scales and every quant / sub-scale bit set
    mx = np.full((1, block_bytes), 0xFF, dtype=np.uint8)
    set_f16(mx, offs, 0x7BFF)  # 65504
    parts.append(mx)
    # negative largest scales with random quants
    neg = rng.integers(0, 256, size=(1, block_bytes), dtype=np.uint8)
    set_f16(neg, offs, 0xFBFF)  # -65504
    parts.append(neg)
    # subnormal scales with random quants
    sub = rng.integers(0, 256, size=(1, block_bytes), dtype=np.uint8)
    set_f16(sub, offs, 0x0001)
    parts.append(sub)
    blocks = np.concatenate(parts, axis=0)
    expect = quants.dequantize(blocks, qtype).astype(np.float32).reshape(-1)
    assert expect.size == blocks.shape[0] * block_size
    assert np.all(np.isfinite(expect)), qtype.name
    add(K_DEQUANT, int(qtype), blocks.shape[0], block_size, block_bytes,
        blocks.tobytes() + expect.astype("<f4").tobytes())


def plain_dequant_sections():
    n = 64
    # f32: random finite values including zeros and extremes
    v = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, size=n)).astype(np.float32)
    v[:4] = [0.0, -0.0, np.finfo(np.float32).max, np.finfo(np.float32).tiny]
    add(K_DEQUANT, int(T.F32), n, 1, 4, v.astype("<f4").tobytes() + v.astype("<f4").tobytes())
    # f16: random finite bit patterns
    h = rng.integers(0, 0x7C00, size=n, dtype=np.uint16) | np.where(
        rng.random(n) < 0.5, 0x8000, 0).astype(np.uint16)
    e = quants.dequantize(h.view(np.uint8), T.F16).astype(np.float32)
    add(K_DEQUANT, int(T.F16), n, 1, 2, h.astype("<u2").tobytes() + e.astype("<f4").tobytes())
    # bf16: random finite bit patterns
    b = rng.integers(0, 0x7F80, size=n, dtype=np.uint16) | np.where(
        rng.random(n) < 0.5, 0x8000, 0).astype(np.uint16)
    e = quants.dequantize(b.view(np.uint8), T.BF16).astype(np.float32).reshape(-1)
    add(K_DEQUANT, int(T.BF16), n, 1, 2, b.astype("<u2").tobytes() + e.astype("<f4").tobytes())


def quant_section(qtype):
    block_size, block_bytes = GGML_QUANT_SIZES[qtype]
    blocks = []
    for _ in range(4):  # random blocks at assorted scales
        blocks.append(rng.standard_normal(block_size) * 10.0 ** rng.uniform(-3, 2))
    blocks.append(np.zeros(block_size))                       # all zero
    blocks.append(np.full(block_size, 0.75))                  # all equal
    b = rng.uniform(-1, 1, block_size); b[7] = -5.0           # negative extreme
    blocks.append(b)
    b = rng.uniform(-1, 1, block_size); b[3] = 4.0; b[20] = -4.0  # tie of magnitudes
    blocks.append(b)
    b = np.arange(block_size) - 15.5                          # exact halves on the grid
    blocks.append(b)
    b = (rng.integers(-127, 128, block_size) + 0.5); b[0] = 127.0  # ties for q8_0 rounding
    blocks.append(b)
    b = rng.uniform(1.0, 2.0, block_size)                     # all positive, offset
    blocks.append(b)
    b = rng.standard_normal(block_size) * 1e-6; b[5] = 3e-5   # tiny (subnormal f16 scales)
    blocks.append(b)
    x = np.concatenate(blocks).astype(np.float32)
    q = quants.quantize(x.reshape(1, -1), qtype).reshape(-1)
    assert q.dtype == np.uint8 and q.size == x.size // block_size * block_bytes
    add(K_QUANT, int(qtype), x.size, block_size, block_bytes,
        x.astype("<f4").tobytes() + q.tobytes())


def f16_table_section():
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    bits = h.view(np.float16).astype(np.float32).view(np.uint32)
    assert np.all((bits & np.uint32(0x1FFF)) == 0)
    u24 = (bits >> np.uint32(8)).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
    add(K_F16_TO_F32, 0, 65536, 0, 0, u24.tobytes())


def f32_probe_values():
    """f32 bit patterns exercising rounding into f16 and bf16."""
    vals = []
    # special values and range boundaries
    specials = [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.996, 65520.0, 65536.0, -65520.0,
                np.inf, -np.inf, 2.0 ** -24, 2.0 ** -25, -(2.0 ** -25), 2.0 ** -26,
                1.5 * 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -14, 2.0 ** -14 - 2.0 ** -25,
                np.finfo(np.float32).max, -np.finfo(np.float32).max, np.finfo(np.float32).tiny,
                1e-45, 3.4e38, 1.0 / 3.0, 0.1]
    vals += list(np.array(specials, dtype=np.float32).view(np.uint32))
    vals += [np.uint32(0x00000001), np.uint32(0x80000001), np.uint32(0x007FFFFF),  # f32 denormals
             np.uint32(0x7FC00000), np.uint32(0xFFC00000), np.uint32(0x7FE12345),  # quiet NaNs
             np.uint32(0x7F7FFFFF), np.uint32(0x7F7F8000), np.uint32(0x7F7F7FFF)]  # bf16 overflow
    # exact halfway points between neighbouring f16 values (normal and subnormal), and
    # one f32 ulp either side
    h = rng.integers(0, 0x7BFF, size=96, dtype=np.uint16)
    lo = h.view(np.float16).astype(np.float64)
    hi = (h + 1).astype(np.uint16).view(np.float16).astype(np.float64)
    mid = ((lo + hi) / 2).astype(np.float32).view(np.uint32)
    vals += list(mid) + list(mid + 1) + list(mid - 1)
    # exact halfway points for bf16 (low 16 bits 0x8000), even and odd
    r = rng.integers(0, 0x7F7F, size=64, dtype=np.uint32) << 16
    vals += list(r | 0x8000) + list((r | 0x10000) | 0x8000) + list(r | 0x7FFF) + list(r | 0x8001)
    # random values with exponents spanning the f16 range and beyond
    e = rng.integers(96, 150, size=200, dtype=np.uint32)
    m = rng.integers(0, 1 << 23, size=200, dtype=np.uint32)
    s = rng.integers(0, 2, size=200, dtype=np.uint32) << 31
    vals += list(s | (e << 23) | m)
    # random bit patterns over the whole f32 range
    vals += list(rng.integers(0, 1 << 32, size=100, dtype=np.uint64).astype(np.uint32))
    v = np.array(vals, dtype=np.uint32)
    # signed copies of everything
    return np.concatenate([v, v ^ np.uint32(0x80000000)])


def bf16_round(bits):
    """Integer round-to-nearest-even f32 -> bf16; NaN becomes quiet with sign and top bits."""
    n = bits.astype(np.uint64)
    is_nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = (n + np.uint64(0x7FFF) + ((n >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    quiet = (n >> np.uint64(16)) | np.uint64(0x40)
    return np.where(is_nan, quiet, rounded).astype(np.uint16)


def conversion_sections():
    v = f32_probe_values()
    f = v.view(np.float32)
    with np.errstate(over="ignore"):
        h = f.astype(np.float16).view(np.uint16)
    add(K_F32_TO_F16, 0, v.size, 0, 0, v.astype("<u4").tobytes() + h.astype("<u2").tobytes())
    b = bf16_round(v)
    # cross-check against gguf's own bf16 quantizer (same rule) on the non-NaN values
    ok = ~np.isnan(f)
    g = quants.quantize(f[ok].reshape(1, -1), T.BF16).view(np.uint16).reshape(-1)
    assert np.array_equal(g, b[ok]), "bf16 rounding disagrees with gguf.quants"
    add(K_F32_TO_BF16, 0, v.size, 0, 0, v.astype("<u4").tobytes() + b.astype("<u2").tobytes())


def sizes_section():
    payload = b"".join(struct.pack("<3I", int(t), *GGML_QUANT_SIZES[t]) for t in ENUM_TYPES)
    add(K_SIZES, 0, len(ENUM_TYPES), 0, 0, payload)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/dtype_vectors.bin"
    sizes_section()
    plain_dequant_sections()
    for t in SMALL_TYPES:
        dequant_section(t, 12)
    for t in K_TYPES:
        dequant_section(t, 2)
    for t in SMALL_TYPES:
        quant_section(t)
    f16_table_section()
    conversion_sections()
    data = MAGIC + struct.pack("<2I", VERSION, len(sections)) + b"".join(sections)
    with open(out, "wb") as fp:
        fp.write(data)
    print(f"wrote {out}: {len(sections)} sections, {len(data)} bytes")


if __name__ == "__main__":
    main()
