#!/usr/bin/env python3
"""oracle_share.py - shared-layer models (slimlm share) against the float64 numpy reference.

Run from the repository root (tests/run.sh does). Environment: SLIMLM_BIN (default
build/slimlm).

For tiny random models (tests/reference/make_tiny_model.py) converted by `slimlm share`:
  a) the reference materializes every layer's matrices from the shared file itself
     (W_l = blk.{map[l]} matrix + delta_b @ delta_a, read with the gguf package) and computes
     logits in float64 (llama_ref.py); the engine runs the shared file on its exact path
     (--isa ref). Same tolerance as oracle_logits.py: max |C - numpy| < 1e-3 of the range at
     every position. Groups, loop pattern, ranks 0 / 4 / full, mean and best init, f16 and
     f32 storage, llama and qwen2.
  b) full-rank deltas stored in f32 reproduce the ORIGINAL model's logits (1e-4 of the range).
  c) the shared file stores each shared matrix once: its tensor count and size are those of
     the unique layers plus the deltas.
  d) malformed sharing metadata or delta tensors are refused with one error line and a
     non-zero exit: a map entry out of range, a map entry naming a layer that does not store
     its own matrices, a delta_a without its delta_b.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))

import gguf  # noqa: E402
import llama_ref  # noqa: E402
import make_tiny_model  # noqa: E402

BIN = os.environ.get("SLIMLM_BIN", "build/slimlm")
LINS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
REL_TOL = 1e-3
passed = failed = 0


def check(ok, msg):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL", msg)


def run(args):
    return subprocess.run([BIN] + args, capture_output=True, text=True)


def engine_logits(path, ids, tmp):
    out = os.path.join(tmp, "logits.bin")
    r = run(["logits", "-m", path, "--ids", ",".join(map(str, ids)), "--out", out, "--isa", "ref", "-t", "1",
             "--kv-type", "f32"])
    if r.returncode != 0:
        raise RuntimeError("logits failed: " + r.stderr.strip())
    return np.fromfile(out, dtype="<f4").reshape(len(ids), -1).astype(np.float64)


def materialized(path):
    """The shared file as a plain model: every layer's matrices written out."""
    m = llama_ref.load(path)
    lmap = [int(x) for x in m.meta["slimlm.share.layer_map"]]
    stored = {(src, lin): m.w["blk.%d.%s.weight" % (src, lin)].copy() for src in set(lmap) for lin in LINS}
    for l, src in enumerate(lmap):
        for lin in LINS:
            w = stored[(src, lin)].copy()
            a = m.w.get("blk.%d.%s.delta_a" % (l, lin))
            b = m.w.get("blk.%d.%s.delta_b" % (l, lin))
            if a is not None:
                w = w + b @ a
            m.w["blk.%d.%s.weight" % (l, lin)] = w
    return m, lmap


def worst_rel(c, ref):
    rng = ref.max(axis=1) - ref.min(axis=1)
    return float(np.max(np.abs(c - ref).max(axis=1) / rng))


def main():
    rs = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            # (arch, layers, share args)
            ("llama", 4, ["--groups", "2", "--rank", "4", "--type", "f32", "--delta-type", "f32"]),
            ("llama", 4, ["--groups", "2", "--rank", "0"]),
            ("llama", 6, ["--loop", "2", "--rank", "4", "--init", "best"]),
            ("llama", 5, ["--groups", "2", "--rank", "8", "--init", "best", "--type", "f32"]),
            ("qwen2", 4, ["--groups", "1", "--rank", "4", "--delta-type", "f32"]),
        ]
        for k, (arch, layers, args) in enumerate(cases):
            src = os.path.join(tmp, "m%d.gguf" % k)
            make_tiny_model.make(src, arch=arch, wtype="f32", seed=10 + k, layers=layers)
            out = os.path.join(tmp, "s%d.gguf" % k)
            r = run(["share", "-m", src, "-o", out, "-q"] + args)
            check(r.returncode == 0, "share %s %s: %s" % (arch, " ".join(args), r.stderr.strip()))
            if r.returncode != 0:
                continue
            ref_model, lmap = materialized(out)
            ids = [int(x) for x in rs.integers(0, ref_model.n_vocab, 24)]
            ref = llama_ref.logits(ref_model, ids)
            c = engine_logits(out, ids, tmp)
            e = worst_rel(c, ref)
            print("case %d (%s, %d layers, %s): map %s, worst |C - numpy| / range %.2e" % (k, arch, layers, " ".join(args), lmap, e))
            check(e < REL_TOL, "case %d: engine vs materialized reference %.3g" % (k, e))
            # (c) stored once: the non-source layers have no matrices in the file
            names = {t.name for t in gguf.GGUFReader(out).tensors}
            stored = {l for l in range(layers) if "blk.%d.attn_q.weight" % l in names}
            check(stored == set(lmap), "case %d: layers storing matrices %s, map sources %s" % (k, sorted(stored), sorted(set(lmap))))

        # (b) full rank reproduces the original
        src = os.path.join(tmp, "full.gguf")
        make_tiny_model.make(src, arch="llama", wtype="f32", seed=5, layers=3)
        out = os.path.join(tmp, "full-s.gguf")
        r = run(["share", "-m", src, "-o", out, "-q", "--groups", "1", "--rank", "128", "--type", "f32", "--delta-type", "f32"])
        check(r.returncode == 0, "full-rank share: " + r.stderr.strip())
        ids = [int(x) for x in rs.integers(0, 300, 20)]
        a, b = engine_logits(src, ids, tmp), engine_logits(out, ids, tmp)
        e = worst_rel(b, a)
        print("full-rank deltas vs the original: worst |diff| / range %.2e" % e)
        check(e < 1e-4, "full-rank shared model differs from the original: %.3g" % e)
        check(os.path.getsize(out) > os.path.getsize(src), "full-rank file is larger (deltas)")
        # rank 0 in f32 is smaller: 3 layers -> 1 stored
        out0 = os.path.join(tmp, "r0.gguf")
        run(["share", "-m", src, "-o", out0, "-q", "--groups", "1", "--type", "f32"])
        sz0, sz = os.path.getsize(out0), os.path.getsize(src)
        check(sz0 < 0.8 * sz, "rank-0 shared file %d bytes vs original %d" % (sz0, sz))

        # (d) malformed metadata
        good = os.path.join(tmp, "s0.gguf")
        data = bytearray(open(good, "rb").read())
        key = b"slimlm.share.layer_map"
        at = data.find(key)
        check(at > 0, "layer map key in the file")
        vals = at + len(key) + 4 + 4 + 8  # value type, element type, count
        def patched(idx, value, name):
            d = bytearray(data)
            d[vals + 4 * idx: vals + 4 * idx + 4] = int(value).to_bytes(4, "little", signed=True)
            p = os.path.join(tmp, name)
            open(p, "wb").write(d)
            return p
        for p, what in [(patched(1, 99, "bad1.gguf"), "out of range"), (patched(0, 1, "bad2.gguf"), "not a stored layer"),
                        (patched(2, -1, "bad3.gguf"), "negative")]:
            r = run(["logits", "-m", p, "--ids", "1,2", "--out", os.path.join(tmp, "x.bin")])
            lines = [x for x in r.stderr.strip().splitlines() if x]
            check(r.returncode != 0 and len(lines) == 1 and "layer_map" in lines[0],
                  "map %s: exit %d, stderr %r" % (what, r.returncode, r.stderr))
        # a delta_a without delta_b: rename delta_b's name bytes
        d = bytearray(data)
        nb = b"blk.1.attn_q.delta_b"
        i = d.find(nb)
        check(i > 0, "delta_b name in the file")
        d[i: i + len(nb)] = b"blk.1.attn_q.delta_x"
        p = os.path.join(tmp, "bad4.gguf")
        open(p, "wb").write(d)
        r = run(["logits", "-m", p, "--ids", "1,2", "--out", os.path.join(tmp, "x.bin")])
        check(r.returncode != 0 and "delta" in r.stderr, "lone delta_a refused: exit %d %r" % (r.returncode, r.stderr))
        # bad flags
        for args in (["--groups", "2", "--loop", "2"], [], ["--groups", "99"], ["--rank", "-1", "--groups", "1"],
                     ["--groups", "1", "--init", "median"]):
            o = os.path.join(tmp, "never.gguf")
            r = run(["share", "-m", src, "-o", o] + args)
            check(r.returncode != 0 and not os.path.exists(o) and len(r.stderr.strip().splitlines()) == 1,
                  "share %s: exit %d, %r" % (args, r.returncode, r.stderr))
    print("oracle_share: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
