#!/usr/bin/env python3
"""oracle_logits.py - the C engine's logits against the float64 numpy reference.

Run from the repository root (tests/run.sh does): python3 tests/oracle_logits.py
Environment: SLIMLM_BIN (default build/slimlm), SLIMLM_MODEL (default
/root/.cache/slimlm/SmolLM2-135M-Instruct.Q4_1.gguf).

The engine is driven through its CLI:
  $SLIMLM_BIN logits -m MODEL --ids 1,2,3 --out FILE   float32 [n_ids, n_vocab], little-endian
  $SLIMLM_BIN run -m MODEL --ids 1,2,3 -n 64 --temp 0 --print-ids
                                                        generated ids on one stdout line
Checks (one line each):
  a) tiny random models written by tests/reference/make_tiny_model.py (F32 tied and untied,
     block-quantized variants, qwen2 with biases, linear RoPE scaling): at every position,
     max |C - numpy| < 1e-3 * (max - min of the numpy logits at that position). Optional
     variants the engine reports as unsupported are printed as skips, not failures.
  b) the real model on three prompts, same tolerance; the observed error is printed.
  c) 64 greedy tokens from the engine: each must be the numpy argmax at its position given
     the same prefix, or within 1e-3 * range of the numpy maximum (a near tie).
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))

import llama_ref  # noqa: E402
import make_tiny_model  # noqa: E402

REL_TOL = 1e-3
BIN = os.environ.get("SLIMLM_BIN", "build/slimlm")
REAL_MODEL = os.environ.get("SLIMLM_MODEL", "/root/.cache/slimlm/SmolLM2-135M-Instruct.Q4_1.gguf")
TIMEOUT_S = 600

passed = 0
failed = 0


def report(ok, msg):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {msg}", flush=True)
    else:
        failed += 1
        print(f"FAIL {msg}", flush=True)


def skip(msg):
    print(f"skip {msg}", flush=True)


class Unsupported(Exception):
    pass


class EngineError(Exception):
    pass


def _run(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise EngineError(f"timed out after {TIMEOUT_S}s: {' '.join(cmd)}")
    out = p.stdout.decode("utf-8", errors="replace")
    err = p.stderr.decode("utf-8", errors="replace")
    if p.returncode != 0:
        text = (err.strip() or out.strip()).splitlines()
        last = text[-1] if text else ""
        if "unsupported" in (err + out).lower() or "not supported" in (err + out).lower():
            raise Unsupported(last)
        raise EngineError(f"exit {p.returncode}: {last}")
    return out


def engine_logits(model_path, ids, n_vocab, tmpdir):
    out_path = os.path.join(tmpdir, "logits.f32")
    if os.path.exists(out_path):
        os.remove(out_path)
    _run([BIN, "logits", "-m", model_path, "--ids", ",".join(str(i) for i in ids),
          "--out", out_path])
    if not os.path.exists(out_path):
        raise EngineError(f"no output file {out_path}")
    data = np.fromfile(out_path, dtype="<f4")
    if data.size != len(ids) * n_vocab:
        raise EngineError(f"logits file has {data.size} floats, expected "
                          f"{len(ids)} x {n_vocab} = {len(ids) * n_vocab}")
    return data.reshape(len(ids), n_vocab).astype(np.float64)


def engine_greedy(model_path, ids, n):
    out = _run([BIN, "run", "-m", model_path, "--ids", ",".join(str(i) for i in ids),
                "-n", str(n), "--temp", "0", "--print-ids"])
    for line in reversed(out.strip().splitlines()):
        parts = line.split()
        if parts and all(p.lstrip("-").isdigit() for p in parts):
            return [int(p) for p in parts]
    raise EngineError(f"no line of ids in the output: {out.strip()[-200:]!r}")


def compare(c, ref):
    """(ok, max abs diff, worst diff/range ratio, its position, smallest range)."""
    rng = ref.max(axis=1) - ref.min(axis=1)
    diff = np.abs(c - ref).max(axis=1)
    ratio = diff / rng
    ok = bool(np.all(np.isfinite(c)) and np.all(diff < REL_TOL * rng))
    worst = int(np.nanargmax(ratio)) if np.any(np.isfinite(ratio)) else 0
    return ok, float(np.max(diff)), float(np.max(ratio)), worst, float(np.min(rng))


def check_logits(label, model_path, model, ids, tmpdir, optional=False):
    try:
        c = engine_logits(model_path, ids, model.n_vocab, tmpdir)
    except Unsupported as e:
        if optional:
            skip(f"{label}: engine reports unsupported ({e})")
        else:
            report(False, f"{label}: engine reports unsupported ({e})")
        return
    except EngineError as e:
        report(False, f"{label}: {e}")
        return
    ref = llama_ref.logits(model, ids)
    ok, maxdiff, ratio, worst, minrange = compare(c, ref)
    nonfinite = int(np.size(c) - np.count_nonzero(np.isfinite(c)))
    msg = (f"{label}: {len(ids)} positions, max|C-ref| {maxdiff:.3e}, worst diff/range "
           f"{ratio:.2e} at position {worst} (limit {REL_TOL:.0e}), smallest range {minrange:.3f}")
    if nonfinite:
        msg += f", {nonfinite} non-finite values from the engine"
    report(ok, msg)


def check_greedy(label, model_path, model, prompt, n, bpe=None):
    try:
        gen = engine_greedy(model_path, prompt, n)
    except (Unsupported, EngineError) as e:
        report(False, f"{label}: {e}")
        return
    eos = model.meta.get("tokenizer.ggml.eos_token_id")
    if len(gen) == 0 or len(gen) > n or (len(gen) < n and gen[-1] != eos):
        report(False, f"{label}: engine printed {len(gen)} ids for -n {n}")
        return
    if min(gen) < 0 or max(gen) >= model.n_vocab:
        report(False, f"{label}: generated id out of range")
        return
    ref = llama_ref.logits(model, list(prompt) + gen)
    exact = 0
    bad = []
    for j, tok in enumerate(gen):
        row = ref[len(prompt) - 1 + j]
        best = int(np.argmax(row))
        rng = row.max() - row.min()
        if tok == best:
            exact += 1
        elif row.max() - row[tok] > REL_TOL * rng:
            bad.append((j, tok, best, float(row.max() - row[tok]), float(rng)))
    text = ""
    if bpe is not None:
        text = f", text {bpe.decode(gen)[:80]!r}"
    msg = f"{label}: {len(gen)} tokens, {exact} exact argmax, {len(gen) - exact - len(bad)} near ties"
    if bad:
        j, tok, best, gap, rng = bad[0]
        msg += (f", {len(bad)} wrong (first at step {j}: engine {tok}, reference {best}, "
                f"gap {gap:.4f} of range {rng:.3f})")
    report(not bad, msg + text)


def tiny_checks(tmpdir):
    variants = [
        # label, make_tiny_model options, optional
        ("tiny llama f32 tied", dict(), False),
        ("tiny llama f32 untied", dict(untied=True, seed=1), False),
        ("tiny llama q4_1 + q8_0 embd tied", dict(wtype="q4_1", embd_type="q8_0", seed=2), False),
        ("tiny llama q8_0 untied", dict(wtype="q8_0", untied=True, seed=3), False),
        ("tiny llama q4_0 tied", dict(wtype="q4_0", seed=4), True),
        ("tiny llama f16 untied", dict(wtype="f16", untied=True, seed=5), True),
        ("tiny qwen2 f32 biases", dict(arch="qwen2", seed=6), True),
        ("tiny llama f32 linear rope x4", dict(rope_scale=4.0, seed=7), True),
    ]
    rng = np.random.default_rng(1234)
    for label, opts, optional in variants:
        path = os.path.join(tmpdir, label.replace(" ", "_").replace("+", "") + ".gguf")
        make_tiny_model.make(path, **opts)
        model = llama_ref.load(path)
        bpe = llama_ref.ByteBPE(model.meta)
        ids = bpe.encode("The capital of France is Paris, and")
        ids += [int(i) for i in rng.integers(0, model.n_vocab, size=40 - len(ids))]
        check_logits(label, path, model, ids, tmpdir, optional=optional)


def real_checks(tmpdir):
    if not os.path.exists(REAL_MODEL):
        report(False, f"real model not found at {REAL_MODEL} (scripts/fetch-model.sh fetches it)")
        return
    model = llama_ref.load(REAL_MODEL)  # dequantized once, reused by every check below
    bpe = llama_ref.ByteBPE(model.meta)
    im_start, im_end = 1, 2
    prompts = [
        ("capital", bpe.encode("The capital of France is")),
        ("paragraph", bpe.encode(
            "Robert Boulter is an English film, television and theatre actor. He had a guest "
            "starring role on the television series The Bill in 2000. This was followed by a "
            "starring role in the play Herons written by Simon Stephens, which was performed "
            "in 2001 at the Royal Court Theatre.")),
        ("chat", [im_start] + bpe.encode("user\nWhat is 2+2?") + [im_end] + bpe.encode("\n")
         + [im_start] + bpe.encode("assistant\n")),
    ]
    for name, ids in prompts:
        check_logits(f"real model prompt '{name}'", REAL_MODEL, model, ids, tmpdir)
    story = bpe.encode("Once upon a time, there was a little girl named Lily who")
    check_greedy("real model greedy 64 from 'Once upon a time'", REAL_MODEL, model, story, 64, bpe)


def main():
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        report(False, f"engine binary {BIN} not found or not executable "
                      f"(build it with make, or set SLIMLM_BIN)")
    else:
        with tempfile.TemporaryDirectory(prefix="slimlm-oracle-") as tmpdir:
            tiny_checks(tmpdir)
            real_checks(tmpdir)
    print(f"oracle_logits: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
