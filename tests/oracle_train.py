#!/usr/bin/env python3
"""oracle_train.py - `slimlm distill` step by step against the autograd float64 reference.

Run from the repository root (tests/run.sh does): python3 tests/oracle_train.py
Environment: SLIMLM_BIN (default build/slimlm), SLIMLM_TRAIN_TEXT (default
../shared/data/wikitext2-valid.txt, relative to the repository root).

The reference (tests/reference/train_ref.py) is a forward pass written with autograd.numpy,
so its gradients come from automatic differentiation, not from the C backward; teacher
logits come from llama_ref.py's float64 forward. It is first checked on its own:
  a) its logits equal llama_ref.logits on tiny llama (tied, untied) and qwen2 models, batch
     of 2 sequences: max |diff| <= 1e-9 x (max - min of the logits);
  b) its gradient equals central finite differences (step 1e-5, float64) for a few elements
     of every kind of tensor, for the kl (tau 2), rkl, ce and mix losses (mix over two
     micro-batches):
     |autograd - fd| <= 1e-6 x (largest |gradient| checked) + 1e-4 x |autograd| (truncation
     error h^2 f''' and rounding eps f / h are both ~1e-10 here);
  c) lr_at at the schedule's edges against values written out by hand.
Then the C command runs on tiny F32 models (teacher: 3 layers, dim 64, 4 heads / 2 KV heads,
ffn 128, vocab 300; tied llama, untied llama, qwen2 with biases) for 4 steps of B=2 x L=16
over a few KB of wikitext, once per configuration in RUNS (losses kl / kl tau 2 / rkl / ce /
mix, accumulation, clipping, layer selections, a separate student, frozen embeddings,
weight decay, LoRA). The reference replays each run from the offsets the C log lists and
these are compared, each a counted check per run:
  - loss per step: |C - ref| <= LOSS_TOL x |ref| + LOSS_ABS, LOSS_TOL = 1e-4. The C side
    is float32 and runs the teacher through the inference engine in float32 (f32 KV cache);
    measured against the C side over every run: at most 1.9e-6 relative (qwen2), ~2e-7 elsewhere, so the limit
    has a margin of ~50x while a wrong term of the loss (tau^2, the mix weights, a missing
    position) moves it by far more;
  - lr per step: relative 1e-5 (the C schedule is computed in double and stored as float:
    4.5e-8 measured);
  - grad_norm per step (the norm before clipping): relative 1e-4 (measured <= 1.2e-6);
  - runs with --clip: the norm exceeded the clip at least once (otherwise that run tests
    nothing about clipping);
  - final weights: for each trained tensor, the update the C side made (out - init) against
    the reference's: ||dC - dref|| / ||dref|| <= UPD_TOL = 1e-3. Adam divides each gradient
    element by its own running RMS, so an element's update is ~lr x sign(g) whatever |g|:
    float32 noise in g enters in relative terms only. Measured worst over all runs and
    tensors: 1.3e-4 (qwen2 attn_output), typically 2e-5. Weight decay alone (wd 0.1) is ~1%
    of these updates and a wrong gradient of one tensor moves its update by O(1). Frozen
    tensors must be bit-equal to the float32 init.
  - the output's block_count and tensor names (the student's, output.weight only untied);
  - LoRA (adapters initialized by a C-side random A, B = 0): step 0's loss equals the loss
    of the unadapted student (B = 0 leaves the model unchanged), and the merged update of
    every adapted matrix has rank <= R and is nonzero, while every other tensor is unchanged.
    Later steps depend on the C side's random A and are not compared.
The contract's data rule: a sequence's first token is replaced by the BOS id
(tokenizer.ggml.bos_token_id) when the tokenizer adds BOS (tokenizer.ggml.add_bos_token), as
perplexity windows are scored. When a run's steps disagree, the test
also replays it with the first token left as it is and prints what it finds (a note, not a
check), so a disagreement in that rule is told apart from others.
If the binary has no `distill` command, the C comparison is one failed check saying so
(the reference checks a-c still run).
"""

import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))

import llama_ref  # noqa: E402
import make_tiny_model  # noqa: E402
import train_ref  # noqa: E402

BIN = os.environ.get("SLIMLM_BIN", "build/slimlm")
DATA = os.environ.get("SLIMLM_TRAIN_TEXT",
                      os.path.join(HERE, "..", "..", "shared", "data", "wikitext2-valid.txt"))
TIMEOUT_S = 300

FWD_TOL = 1e-9
FD_STEP = 1e-5
FD_ABS = 1e-6
FD_REL = 1e-4
LOSS_TOL = 1e-4
LOSS_ABS = 1e-7
LR_TOL = 1e-5
GNORM_TOL = 1e-4
# Update of a tensor over 4 steps: ||dC - dref|| / ||dref||. Measured with a correct
# implementation it is set by float32 noise in the gradients seen through Adam's per-element
# normalization; a wrong gradient of any one tensor (a missing term, a transposed product, a
# wrong scale) moves its update by O(1).
UPD_TOL = 1e-3

SEQ = 16
BATCH = 2
STEPS = 4

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


# ----------------------------------------------------------------------------------------
# tiny models

TEACHER_SHAPE = dict(layers=3, dim=64, heads=4, kv_heads=2, ffn=128, vocab=300, wtype="f32")
MODELS = {
    "llama": dict(TEACHER_SHAPE, seed=21),
    "untied": dict(TEACHER_SHAPE, seed=22, untied=True),
    "qwen2": dict(TEACHER_SHAPE, seed=23, arch="qwen2"),
    "student": dict(TEACHER_SHAPE, seed=24, layers=2),  # a separate student for "llama"
}


def make_models(tmpdir):
    paths = {}
    for key, opts in MODELS.items():
        path = os.path.join(tmpdir, f"tiny_{key}.gguf")
        make_tiny_model.make(path, **opts)
        paths[key] = path
    return paths


# ----------------------------------------------------------------------------------------
# a-c: the reference on its own

def check_forward(models):
    rng = np.random.default_rng(5)
    for key in ("llama", "untied", "qwen2"):
        model = models[key]
        st = train_ref.student_from(model)
        toks = rng.integers(0, model.n_vocab, size=(2, 12))
        lg = train_ref.forward(st.params, st.cfg, st.tied, toks).reshape(2, 12, -1)
        worst = 0.0
        for b in range(2):
            ref = llama_ref.logits(model, [int(x) for x in toks[b]])
            rng_ = ref.max(axis=1) - ref.min(axis=1)
            worst = max(worst, float(np.max(np.abs(lg[b] - ref).max(axis=1) / rng_)))
        report(worst <= FWD_TOL, f"reference forward = llama_ref logits ({key}, batch 2 x 12): "
                                 f"max error {worst:.2e} of the range (limit {FWD_TOL:.0e})")


def _probe_elements(params, rng, used_tokens):
    """(name, index) pairs: two elements of every tensor outside the layers, of every tensor
    of layer 0, and of two matrices of layer 1 (embedding elements from rows the batch uses)."""
    out = []
    for name, arr in params.items():
        if name.startswith("blk.") and not name.startswith("blk.0.") and \
                not name.startswith("blk.1.attn_q") and not name.startswith("blk.1.ffn_down"):
            continue
        for _ in range(2):
            if name == "token_embd.weight":
                idx = (int(rng.choice(used_tokens)), int(rng.integers(arr.shape[1])))
            else:
                idx = tuple(int(rng.integers(s)) for s in arr.shape)
            out.append((name, idx))
    return out


def check_gradients(models):
    rng = np.random.default_rng(9)
    teacher = models["qwen2"]
    for loss, tau, w in (("kl", 2.0, 0.0), ("rkl", 1.0, 0.0), ("ce", 1.0, 0.0), ("mix", 1.5, 0.3)):
        st = train_ref.student_from(models["untied"] if loss == "rkl" else teacher, keep=[0, 2])
        stream = [int(x) for x in rng.integers(0, teacher.n_vocab, size=40)]
        seqs = [train_ref.sequence(stream, 0, 8, st.bos), train_ref.sequence(stream, 20, 8, st.bos)]
        mbs = [seqs] if loss != "mix" else [[seqs[0]], [seqs[1]]]  # mix: 2 micro-batches of 1
        opts = dict(loss=loss, tau=tau, ce_weight=w, lr=1e-3, total=1)
        tr = train_ref.Trainer(st, teacher, opts)
        _, grads = tr.loss_and_grad(mbs)
        used = sorted({t for inp, _ in seqs for t in inp})
        probes = _probe_elements(st.params, rng, used)
        ad = np.array([grads[n][i] for n, i in probes])
        fd = np.empty(len(probes))
        for j, (n, i) in enumerate(probes):
            p = st.params[n]
            keep = p[i]
            p[i] = keep + FD_STEP
            lp = _loss_only(tr, mbs)
            p[i] = keep - FD_STEP
            lm = _loss_only(tr, mbs)
            p[i] = keep
            fd[j] = (lp - lm) / (2 * FD_STEP)
        lim = FD_ABS * np.max(np.abs(ad)) + FD_REL * np.abs(ad)
        bad = [probes[j] for j in range(len(probes)) if abs(ad[j] - fd[j]) > lim[j]]
        err = float(np.max(np.abs(ad - fd) / (np.max(np.abs(ad)))))
        report(not bad, f"reference gradient = central differences ({loss}, tau {tau}, "
                        f"{len(probes)} elements of {len({n for n, _ in probes})} tensors): "
                        f"max error {err:.1e} of the largest |g|"
                        + (f"; off at {bad[:4]}" if bad else ""))


def _loss_only(tr, mbs):
    o = tr.o
    n_pos = sum(len(inp) for mb in mbs for inp, _ in mb)
    total = 0.0
    for mb in mbs:
        toks = np.array([inp for inp, _ in mb], dtype=np.int64)
        tgts = np.concatenate([np.array(t, dtype=np.int64) for _, t in mb])
        teach = (np.concatenate([tr.teacher_logits(inp) for inp, _ in mb])
                 if o["loss"] != "ce" else None)
        s = train_ref.forward(tr.st.params, tr.st.cfg, tr.st.tied, toks)
        total += float(train_ref.loss_sum(s, teach, tgts, o["loss"], o.get("tau", 1.0),
                                          o.get("ce_weight", 0.0))) / n_pos
    return total


def check_schedule():
    lr, lo = 1e-3, 1e-4
    cases = [
        # (step, warmup, total, expected)
        (0, 2, 6, lr * 1 / 2), (1, 2, 6, lr), (2, 2, 6, lr),
        (3, 2, 6, lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi / 3))),
        (5, 2, 6, lo), (0, 0, 4, lr), (3, 0, 4, lo), (0, 0, 1, lr),
    ]
    bad = [(s, w, t, train_ref.lr_at(s, w, t, lr, lo), e) for s, w, t, e in cases
           if abs(train_ref.lr_at(s, w, t, lr, lo) - e) > 1e-15]
    report(not bad, f"reference lr_at at the warmup/cosine edges ({len(cases)} cases)"
                    + (f": wrong {bad}" if bad else ""))


# ----------------------------------------------------------------------------------------
# the C command

class EngineError(Exception):
    pass


def run_cmd(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise EngineError(f"timed out after {TIMEOUT_S}s: {' '.join(cmd)}")
    out = p.stdout.decode("utf-8", errors="replace")
    err = p.stderr.decode("utf-8", errors="replace")
    if p.returncode != 0:
        lines = (err.strip() or out.strip()).splitlines()
        raise EngineError(f"exit {p.returncode}: {lines[-1] if lines else ''} ({' '.join(cmd)})")
    return out


def has_distill():
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        return f"binary {BIN} not found or not executable (build it, or set SLIMLM_BIN)"
    p = subprocess.run([BIN, "distill", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    text = p.stdout.decode("utf-8", errors="replace")
    if "--teacher" not in text:
        return f"{BIN} has no `distill` command yet (`distill --help` does not list --teacher)"
    return None


def write_data(tmpdir):
    """A few KB of whole wikitext lines."""
    out = []
    size = 0
    with open(DATA, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            out.append(line)
            size += len(line)
            if size > 3000:
                break
    path = os.path.join(tmpdir, "data.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(out)
    return path


def c_tokens(model_path, data_path):
    out = run_cmd([BIN, "tokenize", "-m", model_path, "-f", data_path, "--ids", "--no-special"]).strip()
    line = [ln for ln in out.splitlines() if ln.startswith("[")][-1]
    return [int(x) for x in line.strip("[]").split(",") if x.strip()]


# Each run: label, teacher key, student selection, options over BASE (they set both the C
# flags and the reference's run).
BASE = dict(loss="kl", tau=1.0, ce_weight=0.0, lr=2e-3, min_lr=2e-4, warmup=1, wd=0.0, clip=0.0,
            accum=1, freeze_embd=False, lora=0)
RUNS = [
    ("kl tau 1", "llama", ("keep", [0, 2]), {}),
    ("kl tau 2", "llama", ("keep", [0, 2]), dict(tau=2.0)),
    ("rkl", "llama", ("keep", [0, 2]), dict(loss="rkl", tau=1.5)),
    ("ce", "llama", ("keep", [0, 2]), dict(loss="ce")),
    ("mix w 0.3 tau 2", "llama", ("keep", [0, 2]), dict(loss="mix", tau=2.0, ce_weight=0.3)),
    ("kl accum 2", "llama", ("keep", [0, 2]), dict(accum=2)),
    ("kl clip", "llama", ("keep", [0, 2]), dict(clip=0.05)),
    ("kl keep 1,2 wd 0.1 no warmup", "llama", ("keep", [1, 2]), dict(wd=0.1, warmup=0)),
    ("kl every-other", "llama", ("every", None), {}),
    ("kl separate student", "llama", ("student", "student"), {}),
    ("kl freeze-embd", "llama", ("keep", [0, 2]), dict(freeze_embd=True)),
    ("kl untied", "untied", ("keep", [0, 2]), {}),
    ("kl untied freeze-embd", "untied", ("keep", [0, 2]), dict(freeze_embd=True)),
    ("kl qwen2", "qwen2", ("keep", [0, 2]), dict(tau=2.0)),
    ("ce qwen2", "qwen2", ("keep", [0, 1]), dict(loss="ce", wd=0.1)),
]
LORA_RANK = 4


def distill_cmd(paths, tkey, sel, o, data, out, log, tokens):
    cmd = [BIN, "distill", "--teacher", paths[tkey], "-o", out]
    kind, arg = sel
    if kind == "keep":
        cmd += ["--keep-layers", ",".join(str(x) for x in arg)]
    elif kind == "every":
        cmd += ["--every-other"]
    else:
        cmd += ["--student", paths[arg]]
    cmd += ["--data", data, "--tokens", str(tokens), "--seq", str(SEQ), "--batch", str(BATCH),
            "--accum", str(o["accum"]), "--lr", repr(o["lr"]), "--min-lr", repr(o["min_lr"]),
            "--warmup", str(o["warmup"]), "--wd", repr(o["wd"]), "--clip", repr(o["clip"]),
            "--loss", o["loss"], "--type", "f32", "--seed", "7", "-t", "1", "--log", log]
    if o["loss"] in ("kl", "rkl", "mix"):
        cmd += ["--temp", repr(o["tau"])]
    if o["loss"] == "mix":
        cmd += ["--ce-weight", repr(o["ce_weight"])]
    if o["freeze_embd"]:
        cmd += ["--freeze-embd"]
    if o["lora"]:
        cmd += ["--lora", str(o["lora"]), "--lora-alpha", str(2 * o["lora"])]
    return cmd


def read_log(path):
    steps = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if "step" in rec and "offsets" in rec:
                steps.append(rec)
    return steps


def reference_student(models, tkey, sel):
    kind, arg = sel
    if kind == "keep":
        return train_ref.student_from(models[tkey], keep=arg)
    if kind == "every":
        return train_ref.student_from(models[tkey], keep=list(range(0, models[tkey].config.n_layer, 2)))
    return train_ref.student_from(models[arg])


def _rel(c, r, tol, floor=0.0):
    return abs(c - r) <= tol * abs(r) + floor


def compare_steps(label, log, ref_steps):
    """Counted checks: loss, lr, grad_norm, each over every step."""
    n = min(len(log), len(ref_steps))
    all_ok = True
    for key, tol, floor in (("loss", LOSS_TOL, LOSS_ABS), ("lr", LR_TOL, 0.0),
                            ("grad_norm", GNORM_TOL, 0.0)):
        rows = []
        ok = n > 0
        worst = 0.0
        for s in range(n):
            c = float(log[s][key])
            r = float(ref_steps[s][key])
            good = _rel(c, r, tol, floor)
            ok = ok and good
            worst = max(worst, abs(c - r) / max(abs(r), 1e-300))
            rows.append(f"step {s}: C {c:.8g} ref {r:.8g}{'' if good else ' <-- off'}")
        msg = f"{label}: {key} at {n} steps, max relative error {worst:.1e} (limit {tol:.0e})"
        if not ok:
            msg += "\n       " + "\n       ".join(rows)
        report(ok, msg)
        all_ok = all_ok and ok
    return all_ok


def diagnose_bos(models, tkey, sel, o, stream, recs):
    """Not a check: whether the C losses match when the first token is left as it is."""
    _, _, alt, _ = replay(models, tkey, sel, o, stream, recs, bos=NO_BOS)
    err = max(abs(float(c["loss"]) - r["loss"]) / abs(r["loss"]) for c, r in zip(recs, alt))
    gerr = max(abs(float(c["grad_norm"]) - r["grad_norm"]) / r["grad_norm"] for c, r in zip(recs, alt))
    print(f"     note: with the first token NOT replaced by BOS {train_ref.bos_id(models[tkey])} the reference "
          f"agrees to {err:.1e} (loss) / {gerr:.1e} (grad_norm) relative", flush=True)


def compare_weights(label, out_path, init, final, trainable, n_layer):
    """Counted checks: block_count and tensor names; every trained tensor's update; frozen
    tensors unchanged."""
    got = llama_ref.load(out_path)
    report(got.config.n_layer == n_layer,
           f"{label}: output block_count {got.config.n_layer} (expected {n_layer})")
    names = set(final.keys())
    have = set(got.w.keys())
    if "output.weight" not in names:
        have.discard("output.weight")  # llama_ref.load aliases a tied head
    missing = sorted(names - have)
    extra = sorted(have - names)
    report(not missing and not extra,
           f"{label}: output tensor names match the student's ({len(names)} tensors)"
           + (f"; missing {missing[:5]}" if missing else "") + (f"; extra {extra[:5]}" if extra else ""))
    worst = (0.0, None)
    bad = []
    for n in sorted(names & have):
        c = got.w[n]
        if c.shape != final[n].shape:
            bad.append(f"{n}: shape {c.shape} vs {final[n].shape}")
            continue
        init32 = init[n].astype(np.float32).astype(np.float64)
        if n not in trainable:
            if not np.array_equal(c, init32):
                bad.append(f"{n} (frozen): changed, max |out - init| {np.max(np.abs(c - init32)):.2e}")
            continue
        dc = c - init32
        dr = final[n] - init[n]
        den = np.linalg.norm(dr)
        err = np.linalg.norm(dc - dr) / den if den > 0 else np.linalg.norm(dc)
        if err > worst[0]:
            worst = (err, n)
        if not err <= UPD_TOL:
            bad.append(f"{n}: ||dC - dref|| / ||dref|| = {err:.2e} (||dref|| {den:.2e}, "
                       f"||dC|| {np.linalg.norm(dc):.2e})")
    report(not bad, f"{label}: final weights, update of every trained tensor within {UPD_TOL:.0e} "
                    f"(worst {worst[0]:.1e} at {worst[1]}), frozen tensors unchanged"
                    + ("\n       " + "\n       ".join(bad[:12]) if bad else ""))


NO_BOS = object()


def replay(models, tkey, sel, o, stream, log, bos=None):
    """The reference run over the offsets of the C log; bos=NO_BOS keeps every sequence's
    first token (a diagnosis only: the contract replaces it by the BOS id)."""
    st = reference_student(models, tkey, sel)
    if bos is NO_BOS:
        st.bos = None
    init = {n: a.copy() for n, a in st.params.items()}
    total = len(log)
    opts = dict(o, total=total)
    tr = train_ref.Trainer(st, models[tkey], opts)
    ref_steps = []
    for rec in log:
        offs = [int(x) for x in rec["offsets"]]
        if len(offs) != BATCH * o["accum"]:
            raise EngineError(f"step {rec['step']} lists {len(offs)} offsets, expected "
                              f"{BATCH * o['accum']}")
        mbs = [[train_ref.sequence(stream, off, SEQ, st.bos) for off in offs[a * BATCH:(a + 1) * BATCH]]
               for a in range(o["accum"])]
        ref_steps.append(tr.step(mbs))
    return st, init, ref_steps, set(tr.trainable)


def c_run(paths, models, tmpdir, data, stream, label, tkey, sel, extra):
    o = dict(BASE, **extra)
    tokens = STEPS * BATCH * SEQ * o["accum"]
    tag = label.replace(" ", "_").replace(",", "_").replace(".", "")
    out = os.path.join(tmpdir, tag + ".gguf")
    log = os.path.join(tmpdir, tag + ".jsonl")
    run_cmd(distill_cmd(paths, tkey, sel, o, data, out, log, tokens))
    recs = read_log(log)
    expect = train_ref.total_steps(tokens, BATCH, SEQ, o["accum"])
    report(len(recs) == expect, f"{label}: the log has {len(recs)} steps (expected {expect})")
    return o, out, recs


def c_checks(paths, models, tmpdir):
    data = write_data(tmpdir)
    streams = {}
    for label, tkey, sel, extra in RUNS:
        try:
            if tkey not in streams:
                streams[tkey] = c_tokens(paths[tkey], data)
            stream = streams[tkey]
            o, out, recs = c_run(paths, models, tmpdir, data, stream, label, tkey, sel, extra)
            st, init, ref_steps, trainable = replay(models, tkey, sel, o, stream, recs)
            ok = compare_steps(label, recs, ref_steps)
            if o["clip"] > 0:
                top = max(r["grad_norm"] for r in ref_steps)
                report(top > o["clip"], f"{label}: clipping was active (largest norm {top:.4g}, "
                                        f"clip {o['clip']:g})")
            compare_weights(label, out, init, st.params, trainable, st.cfg.n_layer)
            if not ok and st.bos is not None:
                diagnose_bos(models, tkey, sel, o, stream, recs)
        except (EngineError, ValueError, KeyError, json.JSONDecodeError) as e:
            report(False, f"{label}: {e}")
    lora_checks(paths, models, tmpdir, data, streams)


LORA_TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def lora_checks(paths, models, tmpdir, data, streams):
    label = f"kl lora {LORA_RANK}"
    try:
        stream = streams.setdefault("llama", c_tokens(paths["llama"], data))
        o, out, recs = c_run(paths, models, tmpdir, data, stream, label, "llama", ("keep", [0, 2]),
                             dict(lora=LORA_RANK))
        if not recs:
            return
        st = train_ref.student_from(models["llama"], keep=[0, 2])
        tr = train_ref.Trainer(st, models["llama"], dict(o, total=len(recs)))
        offs = [int(x) for x in recs[0]["offsets"]]
        loss0, _ = tr.loss_and_grad([[train_ref.sequence(stream, off, SEQ, st.bos) for off in offs]])
        c0 = float(recs[0]["loss"])
        ok = _rel(c0, loss0, LOSS_TOL, LOSS_ABS)
        note = ""
        if not ok and st.bos is not None:
            st.bos = None
            alt, _ = tr.loss_and_grad([[train_ref.sequence(stream, off, SEQ, None) for off in offs]])
            note = f" (with the first token NOT replaced by BOS: {alt:.8g})"
        report(ok, f"{label}: step 0 loss {c0:.8g} = the unadapted student's {loss0:.8g} (B = 0)"
                   + note)
        got = llama_ref.load(out)
        bad = []
        for n, init in st.params.items():
            if n not in got.w:
                bad.append(f"{n}: missing")
                continue
            d = got.w[n] - init.astype(np.float32).astype(np.float64)
            base = n.split(".")[2] if n.startswith("blk.") else ""
            if base in LORA_TARGETS and n.endswith(".weight"):
                sv = np.linalg.svd(d, compute_uv=False)
                rank = int(np.sum(sv > 1e-4 * max(sv[0], 1e-30)))
                if rank > LORA_RANK or sv[0] == 0:
                    bad.append(f"{n}: update rank {rank}, largest singular value {sv[0]:.2e}")
            elif np.any(d != 0):
                bad.append(f"{n}: not adapted but changed by {np.max(np.abs(d)):.2e}")
        report(not bad, f"{label}: merged updates of q,k,v,o,gate,up,down have rank <= "
                        f"{LORA_RANK} and are nonzero, other tensors unchanged"
                        + ("\n       " + "\n       ".join(bad[:12]) if bad else ""))
    except (EngineError, ValueError, KeyError, json.JSONDecodeError) as e:
        report(False, f"{label}: {e}")


def main():
    with tempfile.TemporaryDirectory(prefix="slimlm-oracle-train-") as tmpdir:
        paths = make_models(tmpdir)
        models = {k: llama_ref.load(p) for k, p in paths.items()}
        check_forward(models)
        check_gradients(models)
        check_schedule()
        why = has_distill()
        if why:
            report(False, f"C comparison not run: {why}")
        else:
            c_checks(paths, models, tmpdir)
    print(f"oracle_train: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
