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
     its own matrices, a KV map entry naming a later layer or a layer that reads another's
     keys, a delta_a without its delta_b.
  e) cross-layer KV sharing (--kv-share): a reference forward in which layer l attends to
     the keys and values of layer kv_map[l]; only the layers computing keys store wk / wv.
  f) --keep-layers LIST --identity: the other layers use the last kept layer's matrices and
     start with zero norm weights, so the shared model's logits equal those of the model of
     the kept layers alone (`distill --keep-layers LIST --tokens 0`) within 1e-5 of the range.
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
    stored = {(src, lin): m.w["blk.%d.%s.weight" % (src, lin)].copy() for src in set(lmap) for lin in LINS
              if "blk.%d.%s.weight" % (src, lin) in m.w}
    for l, src in enumerate(lmap):
        for lin in LINS:
            if (src, lin) not in stored:  # keys / values of a layer that reads another's
                continue
            w = stored[(src, lin)].copy()
            a = m.w.get("blk.%d.%s.delta_a" % (l, lin))
            b = m.w.get("blk.%d.%s.delta_b" % (l, lin))
            if a is not None:
                w = w + b @ a
            m.w["blk.%d.%s.weight" % (l, lin)] = w
    return m, lmap


def logits_kv(model, ids, kv_map):
    """llama_ref's forward with cross-layer attention: layer l attends to the (RoPE'd) keys
    and values computed by layer kv_map[l]."""
    cfg, w = model.config, model.w
    T = len(ids)
    cos, sin = llama_ref.rope_angles(cfg, T)
    x = w["token_embd.weight"][np.asarray(ids)].copy()
    cache = {}
    for il in range(cfg.n_layer):
        p = "blk.%d." % il
        h = llama_ref.rms_norm(x, w[p + "attn_norm.weight"], cfg.eps)
        q = llama_ref.linear(h, w[p + "attn_q.weight"], w.get(p + "attn_q.bias"))
        q = llama_ref.rope(q.reshape(T, cfg.n_head, cfg.head_dim), cos, sin, cfg.n_rot, cfg.rope_neox)
        if kv_map[il] == il:
            k = llama_ref.linear(h, w[p + "attn_k.weight"], w.get(p + "attn_k.bias"))
            v = llama_ref.linear(h, w[p + "attn_v.weight"], w.get(p + "attn_v.bias"))
            k = llama_ref.rope(k.reshape(T, cfg.n_head_kv, cfg.head_dim), cos, sin, cfg.n_rot, cfg.rope_neox)
            cache[il] = (k, v.reshape(T, cfg.n_head_kv, cfg.head_dim_v))
        k, v = cache[kv_map[il]]
        a = llama_ref.attention(q, k, v, cfg.n_head, cfg.n_head_kv)
        x = x + llama_ref.linear(a, w[p + "attn_output.weight"])
        h = llama_ref.rms_norm(x, w[p + "ffn_norm.weight"], cfg.eps)
        g = llama_ref.linear(h, w[p + "ffn_gate.weight"])
        u = llama_ref.linear(h, w[p + "ffn_up.weight"])
        x = x + llama_ref.linear(llama_ref.silu(g) * u, w[p + "ffn_down.weight"])
    x = llama_ref.rms_norm(x, w["output_norm.weight"], cfg.eps)
    return llama_ref.linear(x, w["output.weight"])


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

        # cross-layer KV sharing (alone, and with weight sharing and deltas; qwen2 biases)
        for k, (arch, layers, args) in enumerate([("llama", 4, ["--kv-share", "2"]),
                                                  ("llama", 6, ["--kv-share", "3", "--groups", "3", "--rank", "4"]),
                                                  ("qwen2", 5, ["--kv-share", "2", "--loop", "2", "--rank", "2"])]):
            src = os.path.join(tmp, "kv%d.gguf" % k)
            make_tiny_model.make(src, arch=arch, wtype="f32", seed=40 + k, layers=layers)
            out = os.path.join(tmp, "kvs%d.gguf" % k)
            r = run(["share", "-m", src, "-o", out, "-q", "--type", "f32", "--delta-type", "f32"] + args)
            check(r.returncode == 0, "share %s: %s" % (" ".join(args), r.stderr.strip()))
            if r.returncode != 0:
                continue
            ref_model, lmap = materialized(out)
            kv_map = [int(x) for x in ref_model.meta["slimlm.share.kv_map"]]
            ids = [int(x) for x in rs.integers(0, ref_model.n_vocab, 24)]
            e = worst_rel(engine_logits(out, ids, tmp), logits_kv(ref_model, ids, kv_map))
            print("kv case %d (%s, %s): kv map %s, worst |C - numpy| / range %.2e" % (k, arch, " ".join(args), kv_map, e))
            check(e < REL_TOL, "kv case %d: engine vs reference %.3g" % (k, e))
            names = {t.name for t in gguf.GGUFReader(out).tensors}
            own = {l for l in range(layers) if "blk.%d.attn_k.weight" % l in names}
            want = {lmap[l] for l in range(layers) if kv_map[l] == l}
            check(own == want, "kv case %d: layers storing wk %s, expected %s" % (k, sorted(own), sorted(want)))
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
        # a KV map entry naming a later layer, and one naming a layer that reads another's keys
        kvd = bytearray(open(os.path.join(tmp, "kvs0.gguf"), "rb").read())
        kkey = b"slimlm.share.kv_map"
        kat = kvd.find(kkey) + len(kkey) + 16
        for idx, value, what in [(1, 2, "a later layer"), (2, 1, "a reader"), (3, 9, "out of range")]:
            d = bytearray(kvd)
            d[kat + 4 * idx: kat + 4 * idx + 4] = int(value).to_bytes(4, "little", signed=True)
            p = os.path.join(tmp, "badkv.gguf")
            open(p, "wb").write(d)
            r = run(["logits", "-m", p, "--ids", "1,2", "--out", os.path.join(tmp, "x.bin")])
            check(r.returncode != 0 and "kv_map" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
                  "kv map naming %s: exit %d, %r" % (what, r.returncode, r.stderr))
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
        # (f) kept layers with identity init: the shared model computes exactly what the model of
        # the kept layers alone computes (the depth-pruned student `distill --keep-layers` writes)
        for arch, layers, keep, extra in (("llama", 5, "0,3-4", []), ("qwen2", 4, "0,2", ["--rank", "4"])):
            src5 = os.path.join(tmp, "k%s.gguf" % arch)
            make_tiny_model.make(src5, arch=arch, wtype="f32", seed=77, layers=layers)
            sh = os.path.join(tmp, "k%s-s.gguf" % arch)
            r = run(["share", "-m", src5, "-o", sh, "-q", "--keep-layers", keep, "--identity", "--type", "f32",
                     "--delta-type", "f32"] + extra)
            check(r.returncode == 0, "share --keep-layers %s --identity: %s" % (keep, r.stderr.strip()))
            dp = os.path.join(tmp, "k%s-d.gguf" % arch)
            r = run(["distill", "--teacher", src5, "--keep-layers", keep, "--tokens", "0", "--type", "f32", "-o", dp,
                     "-t", "1"])
            check(r.returncode == 0, "distill --keep-layers %s --tokens 0: %s" % (keep, r.stderr.strip()))
            if not (os.path.exists(sh) and os.path.exists(dp)):
                continue
            ids = [int(x) for x in rs.integers(0, 300, 16)]
            a, b = engine_logits(sh, ids, tmp), engine_logits(dp, ids, tmp)
            e = worst_rel(a, b)
            print("kept layers %s of %d (%s), identity init: vs the pruned model %.2e" % (keep, layers, arch, e))
            check(e < 1e-5, "kept layers %s identity: differs from the pruned model by %.3g" % (keep, e))
            ref_model, lmap = materialized(sh)
            kept = [int(x) for x in ref_model.meta["slimlm.share.layer_map"]]
            want = []
            ks = sorted({int(v) for v in kept})
            for l in range(layers):
                want.append(max([k for k in ks if k <= l], default=ks[0]))
            check(kept == want, "layer map %s, expected the last kept layer before each %s" % (kept, want))
            hp = os.path.join(tmp, "k%s-h.gguf" % arch)
            r = run(["distill", "--teacher", src5, "--student", sh, "--tokens", "64", "--seq", "16", "--batch", "1",
                     "-o", hp, "-t", "1"])
            check(r.returncode == 0 and os.path.exists(hp), "distill of the kept-layers model: %s" % r.stderr.strip()[-300:])
            e2 = worst_rel(a, llama_ref.logits(ref_model, ids))
            check(e2 < REL_TOL, "kept layers %s: engine vs materialized reference %.3g" % (keep, e2))
        # bad flags
        for args in (["--groups", "2", "--loop", "2"], [], ["--groups", "99"], ["--rank", "-1", "--groups", "1"],
                     ["--groups", "1", "--init", "median"], ["--keep-layers", "0-2"], ["--keep-layers", "2,1"],
                     ["--keep-layers", "x"], ["--keep-layers", "0", "--groups", "1"], ["--keep-layers", "7"]):
            o = os.path.join(tmp, "never.gguf")
            r = run(["share", "-m", src, "-o", o] + args)
            check(r.returncode != 0 and not os.path.exists(o) and len(r.stderr.strip().splitlines()) == 1,
                  "share %s: exit %d, %r" % (args, r.returncode, r.stderr))
    print("oracle_share: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
