#!/usr/bin/env python3
"""oracle_cluster.py - clustered models (slimlm cluster) against an independent numpy decoder.

Run from the repository root (tests/run.sh does). Environment: SLIMLM_BIN (default
build/slimlm).

Tiny random f32 models (tests/reference/make_tiny_model.py) are clustered; this script reads
the output with its own GGUF parser and its own decoders written from the layouts in
docs/FORMATS.md (per-row codebooks cb4/cb8/cb16, per-tensor codebooks cbt32..cbt256 with the
"<base>.codebook" table, the "<base>.outlier_rows/_cols/_vals" side table), materializes every
matrix in float64 and runs the float64 reference forward (reference/llama_ref.py):
  a) engine logits on the exact path (--isa ref) equal the reference within 1e-3 of the
     logit range; on the default kernels (8-bit activations) within 3e-2;
  b) outliers: each matrix stores round(P * n) of them, exactly the entries of largest |w|,
     and decoded + outlier equals the original weight there;
  c) a per-tensor codebook has k int8 entries in [-127, 127] and every row's indices are < k;
  d) pruned zeros: a model pruned to 20% (magnitude) and clustered at k = 4, 16, 32 keeps every pruned weight at exactly 0;
  e) malformed companions are refused with one error line and a non-zero exit: a table entry
     of -128, a missing table, an outlier column out of range, decreasing outlier offsets.
"""

import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))

import llama_ref  # noqa: E402
import make_tiny_model  # noqa: E402

BIN = os.environ.get("SLIMLM_BIN", "build/slimlm")
passed = failed = 0
CB_FIRST = 344
CB_K = {344: 4, 345: 8, 346: 16}
CBT_K = {348: 32, 349: 64, 350: 128, 351: 256}


def check(ok, msg):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL", msg)


def run(args):
    return subprocess.run([BIN] + args, capture_output=True, text=True)


# ---- a minimal GGUF reader ---------------------------------------------------------------

def read_gguf(path):
    """{name: (type, dims, absolute offset)} and the raw bytes."""
    b = open(path, "rb").read()
    assert b[:4] == b"GGUF"
    pos = 8
    n_t, n_kv = struct.unpack_from("<QQ", b, pos)
    pos += 16
    align = 32

    def rstr(p):
        n = struct.unpack_from("<Q", b, p)[0]
        return b[p + 8:p + 8 + n].decode(), p + 8 + n
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def rval(t, p):
        if t == 8:
            return rstr(p)
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, p)
            p += 12
            out = []
            for _ in range(n):
                v, p = rval(et, p)
                out.append(v)
            return out, p
        fmt = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}[t]
        return struct.unpack_from(fmt, b, p)[0], p + sizes[t]
    for _ in range(n_kv):
        key, pos = rstr(pos)
        t = struct.unpack_from("<I", b, pos)[0]
        v, pos = rval(t, pos + 4)
        if key == "general.alignment":
            align = v
    infos = []
    for _ in range(n_t):
        name, pos = rstr(pos)
        nd = struct.unpack_from("<I", b, pos)[0]
        dims = struct.unpack_from("<%dQ" % nd, b, pos + 4)
        pos += 4 + 8 * nd
        t, off = struct.unpack_from("<IQ", b, pos)
        pos += 12
        infos.append((name, t, dims, off))
    data = (pos + align - 1) // align * align
    return {n: (t, d, data + o) for n, t, d, o in infos}, b


def f16(b, p):
    return float(np.frombuffer(b, "<f2", 1, p)[0])


def sub_indices_cb(bits, s):
    """32 indices of a per-row codebook sub-block (docs/FORMATS.md)."""
    if bits == 4:
        return [s[e] & 15 for e in range(16)] + [s[e] >> 4 for e in range(16)]
    idx = [(s[e % 8] >> (2 * (e // 8))) & 3 for e in range(32)]
    if bits == 3:
        h = int.from_bytes(s[8:12], "little")
        idx = [i | (((h >> e) & 1) << 2) for e, i in enumerate(idx)]
    return idx


def sub_indices_cbt(bits, s):
    """32 indices of a per-tensor codebook sub-block (docs/FORMATS.md)."""
    if bits == 8:
        return list(s[:32])
    idx = [s[e] & 15 for e in range(16)] + [s[e] >> 4 for e in range(16)]
    if bits == 5:
        h = int.from_bytes(s[16:20], "little")
        return [i | (((h >> e) & 1) << 4) for e, i in enumerate(idx)]
    idx = [i | (((s[16 + e % 8] >> (2 * (e // 8))) & 3) << 4) for e, i in enumerate(idx)]
    if bits == 7:
        h = int.from_bytes(s[24:28], "little")
        idx = [i | (((h >> e) & 1) << 6) for e, i in enumerate(idx)]
    return idx


def decode_matrix(t, dims, off, b, table=None):
    """A cb / cbt / f32 matrix as float64 [rows][cols], and its indices (or None)."""
    cols, rows = dims[0], dims[1]
    if t == 0:
        return np.frombuffer(b, "<f4", cols * rows, off).reshape(rows, cols).astype(np.float64), None
    if t in CB_K:
        k = CB_K[t]
        bits = {4: 2, 8: 3, 16: 4}[k]
        hdr, sub = 2 + k, 4 * bits
    else:
        k = CBT_K[t]
        bits = {32: 5, 64: 6, 128: 7, 256: 8}[k]
        hdr, sub = 2, 4 * bits
    rb = hdr + cols // 32 * sub
    w = np.zeros((rows, cols))
    ids = np.zeros((rows, cols), dtype=np.int64)
    for r in range(rows):
        p = off + r * rb
        s = f16(b, p)
        lv = table if t not in CB_K else np.frombuffer(b, np.int8, k, p + 2).astype(np.float64)
        for j in range(cols // 32):
            q = b[p + hdr + j * sub: p + hdr + (j + 1) * sub]
            i32 = (sub_indices_cb if t in CB_K else sub_indices_cbt)(bits, q)
            ids[r, 32 * j:32 * j + 32] = i32
            w[r, 32 * j:32 * j + 32] = s * lv[np.asarray(i32)]
    return w, ids


def materialize(path):
    """{matrix name: float64 weights} with tables and outliers applied, plus per-matrix info."""
    ts, b = read_gguf(path)
    out, info = {}, {}
    for name, (t, dims, off) in ts.items():
        if len(dims) != 2 or not name.endswith(".weight"):
            continue
        base = name[:-len(".weight")]
        table = None
        if t in CBT_K:
            tt, td, to = ts[base + ".codebook"]
            table = np.frombuffer(b, np.int8, td[0], to).astype(np.float64)
        w, ids = decode_matrix(t, dims, off, b, table)
        ol = None
        if base + ".outlier_rows" in ts:
            _, rd, ro = ts[base + ".outlier_rows"]
            _, cd, co = ts[base + ".outlier_cols"]
            _, vd, vo = ts[base + ".outlier_vals"]
            offs = np.frombuffer(b, "<i4", rd[0], ro)
            cols = np.frombuffer(b, "<i4", cd[0], co)
            vals = np.frombuffer(b, "<f4", vd[0], vo).astype(np.float64)
            ol = []
            for r in range(dims[1]):
                for i in range(offs[r], offs[r + 1]):
                    w[r, cols[i]] += vals[i]
                    ol.append((r, int(cols[i])))
        out[name] = w
        info[name] = (t, table, ids, ol)
    return out, info, ts, b


def engine_logits(path, ids, tmp, isa):
    out = os.path.join(tmp, "logits.bin")
    args = ["logits", "-m", path, "--ids", ",".join(map(str, ids)), "--out", out, "-t", "1", "--kv-type", "f32"]
    if isa:
        args += ["--isa", isa]
    r = run(args)
    if r.returncode != 0:
        raise RuntimeError("logits failed: " + r.stderr.strip())
    return np.fromfile(out, dtype="<f4").reshape(len(ids), -1).astype(np.float64)


def worst_rel(c, ref):
    rng = ref.max(axis=1) - ref.min(axis=1)
    return float(np.max(np.abs(c - ref).max(axis=1) / rng))


def main():
    rs = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(["--k", "16"], 0.0), (["--k", "8"], 0.01), (["--k", "32"], 0.0), (["--k", "64"], 0.005),
                 (["--k", "128"], 0.0), (["--k", "256"], 0.02), (["--k", "4"], 0.0)]
        for n, (args, frac) in enumerate(cases):
            src = os.path.join(tmp, "m%d.gguf" % n)
            make_tiny_model.make(src, arch="llama" if n % 2 == 0 else "qwen2", wtype="f32", seed=20 + n, layers=2)
            out = os.path.join(tmp, "c%d.gguf" % n)
            extra = ["--outliers", "%g" % frac] if frac else []
            r = run(["cluster", "-m", src, "-o", out, "-q", "-t", "2"] + args + extra)
            label = "cluster %s %s" % (" ".join(args), " ".join(extra))
            check(r.returncode == 0, "%s: %s" % (label, r.stderr.strip()))
            if r.returncode != 0:
                continue
            mats, info, _, _ = materialize(out)
            orig = llama_ref.load(src)
            model = llama_ref.load(src)
            n_cl = 0
            for name, w in mats.items():
                t, table, idx, ol = info[name]
                if t in CB_K or t in CBT_K:
                    n_cl += 1
                model.w[name] = w
                o = orig.w[name].astype(np.float64)
                if t in CBT_K:
                    k = CBT_K[t]
                    check(len(table) == k and table.min() >= -127 and table.max() <= 127,
                          "%s %s: table of %d entries in [%d, %d]" % (label, name, len(table), table.min(), table.max()))
                    check(int(idx.max()) < k, "%s %s: index %d >= k %d" % (label, name, idx.max(), k))
                if frac and (t in CB_K or t in CBT_K):
                    m = int(np.floor(frac * o.size + 0.5))
                    check(ol is not None and len(ol) == m, "%s %s: %s outliers, expected %d" %
                          (label, name, None if ol is None else len(ol), m))
                    if ol:
                        flat = np.abs(o).ravel()
                        top = set(int(i) for i in np.argsort(-flat, kind="stable")[:m])
                        got = set(r * o.shape[1] + c for r, c in ol)
                        check(got == top, "%s %s: outliers are not the %d largest |w|" % (label, name, m))
                        rr, cc = np.array(ol).T
                        d = np.abs(w[rr, cc] - o[rr, cc]).max()
                        check(d <= 1e-6 * np.abs(o).max(), "%s %s: outliers not exact (%.3g)" % (label, name, d))
                if t in CB_K or t in CBT_K:
                    rel = np.sqrt(((w - o) ** 2).sum() / (o ** 2).sum())
                    check(rel < 0.5, "%s %s: relative error %.3f" % (label, name, rel))
            check(n_cl == 14, "%s: %d matrices clustered, expected 14" % (label, n_cl))
            ids = [int(x) for x in rs.integers(0, model.n_vocab, 20)]
            ref = llama_ref.logits(model, ids)
            e_ref = worst_rel(engine_logits(out, ids, tmp, "ref"), ref)
            e_def = worst_rel(engine_logits(out, ids, tmp, None), ref)
            print("%-32s exact path %.2e, default kernels %.2e (of the logit range)" % (label, e_ref, e_def))
            check(e_ref < 1e-3, "%s: exact path vs numpy %.3g" % (label, e_ref))
            check(e_def < 3e-2, "%s: default kernels vs numpy %.3g" % (label, e_def))

        # (d) pruned zeros survive clustering
        src = os.path.join(tmp, "p.gguf")
        make_tiny_model.make(src, arch="llama", wtype="f32", seed=3, layers=2)
        pr = os.path.join(tmp, "p20.gguf")
        r = run(["prune", "-m", src, "-o", pr, "--sparsity", "0.2", "--method", "magnitude", "--type", "f32", "-q"])
        check(r.returncode == 0, "prune: " + r.stderr.strip())
        pm = llama_ref.load(pr)
        for k in ["4", "16", "32"]:
            out = os.path.join(tmp, "pc%s.gguf" % k)
            r = run(["cluster", "-m", pr, "-o", out, "--k", k, "-q"])
            check(r.returncode == 0, "cluster pruned --k %s: %s" % (k, r.stderr.strip()))
            if r.returncode != 0:
                continue
            mats, info, _, _ = materialize(out)
            bad = tot = 0
            for name, w in mats.items():
                if info[name][0] not in CB_K and info[name][0] not in CBT_K:
                    continue
                z = pm.w[name] == 0
                tot += int(z.sum())
                bad += int((w[z] != 0).sum())
            check(tot > 0 and bad == 0, "--k %s: %d of %d pruned weights no longer zero" % (k, bad, tot))
            print("pruned 20%% then --k %s: %d pruned weights, %d nonzero after clustering" % (k, tot, bad))

        # (e) malformed companions
        good = os.path.join(tmp, "c3.gguf")  # --k 64 with outliers
        ts, b = read_gguf(good)

        def refused(data, what):
            p = os.path.join(tmp, "bad.gguf")
            open(p, "wb").write(data)
            r = run(["logits", "-m", p, "--ids", "1,2,3", "--out", os.path.join(tmp, "bad.bin"), "-t", "1"])
            lines = [x for x in r.stderr.strip().split("\n") if x]
            check(r.returncode != 0 and len(lines) == 1, "%s: rc %d, stderr %r" % (what, r.returncode, r.stderr))
        _, _, to = ts["blk.0.attn_q.codebook"]
        d = bytearray(b)
        d[to + 3] = 0x80
        refused(bytes(d), "table entry -128")
        d = bytearray(b)
        at = d.find(b"blk.1.ffn_up.codebook")
        d[at:at + 5] = b"blk.X"
        refused(bytes(d), "missing table")
        _, cd, co = ts["blk.0.ffn_down.outlier_cols"]
        d = bytearray(b)
        d[co:co + 4] = (100000).to_bytes(4, "little")
        refused(bytes(d), "outlier column out of range")
        _, rd, ro = ts["blk.0.attn_k.outlier_rows"]
        offs = np.frombuffer(b, "<i4", rd[0], ro)
        r1 = int(np.argmax(offs > 0))
        d = bytearray(b)
        d[ro + 4 * (r1 + 1):ro + 4 * (r1 + 2)] = (0).to_bytes(4, "little")
        refused(bytes(d), "decreasing outlier offsets")
    print("oracle_cluster: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
