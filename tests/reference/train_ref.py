#!/usr/bin/env python3
"""train_ref.py - an independent float64 reference of slimlm's distillation training step.

The forward pass of a Llama-family student is written here with autograd.numpy (HIPS
autograd), so every gradient comes from automatic differentiation and shares nothing with
the C backward. The GGUF files are read with llama_ref.load (the gguf package, every tensor
dequantized to float64); teacher logits come from llama_ref.logits, the plain numpy float64
forward the inference engine is tested against.

What one training step is (the contract of `slimlm distill`):
  - a micro-batch is B sequences of L tokens; a sequence starting at offset `off` of the token
    stream has input stream[off .. off+L) with its first token replaced by the model's BOS id
    (tokenizer.ggml.bos_token_id) when the tokenizer adds one (tokenizer.ggml.add_bos_token;
    absent: true for SentencePiece "llama" vocabularies, false otherwise), as `slimlm
    perplexity` scores its windows; else unchanged. CE targets stream[off+1 .. off+L];
  - loss = mean over the B*L*A positions of A micro-batches of
      kl:  tau^2 KL(softmax(t/tau) || softmax(s/tau))    (t teacher, s student logits)
      rkl: tau^2 KL(softmax(s/tau) || softmax(t/tau))
      ce:  -log softmax(s)[target]
      mix: (1-w) kl + w ce
  - the gradient of that mean; its global norm over every trainable tensor; when clip > 0
    and the norm exceeds it, the gradient is scaled by clip/norm;
  - lr_s = lr_at(s) (linear warmup, then cosine to min_lr), AdamW with t = s+1:
      m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
      p -= lr_s ((m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + wd p)
    b1 0.9, b2 0.95, eps 1e-8; the decay term only for 2-D tensors (not norms or biases).
  - trainable: every tensor, except the token embedding (and an untied output head) with
    freeze_embd.

Shapes follow llama_ref: a GGUF weight with ne = [n_in, n_out] is a numpy (n_out, n_in) array
and a layer computes y = x @ W.T. A tied model has no "output.weight" parameter: the head is
token_embd.weight, which then collects both gradients.

Use as a module (tests/oracle_train.py), or
  python3 tests/reference/train_ref.py MODEL --ids 1,2,3   prints the logits' argmax per position.
"""

import math
import sys

import numpy as onp
import autograd.numpy as anp
from autograd import value_and_grad

import llama_ref

BETA1 = 0.9
BETA2 = 0.95
ADAM_EPS = 1e-8
MASKED = -1e30  # attention score of a future position (exp underflows to exactly 0)


# ----------------------------------------------------------------------------------------
# the student: config + float64 parameters

class Student:
    """A trainable copy of a model: cfg (llama_ref.Config with n_layer = the kept layers),
    params name -> float64 array, tied (no output.weight parameter), bos (id or None)."""

    def __init__(self, cfg, params, tied, bos):
        self.cfg = cfg
        self.params = params
        self.tied = tied
        self.bos = bos

    def names(self):
        return list(self.params.keys())


def _is_tied(model):
    return model.w["output.weight"] is model.w["token_embd.weight"]


def bos_id(model):
    """The id that replaces each sequence's first token, or None when the tokenizer adds no BOS."""
    v = model.meta.get("tokenizer.ggml.bos_token_id")
    add = model.meta.get("tokenizer.ggml.add_bos_token")
    if add is None:
        add = model.meta.get("tokenizer.ggml.model") == "llama"
    return None if v is None or not add else int(v)


def student_from(model, keep=None):
    """A Student holding the model's weights; keep lists the source layers the student takes,
    in order (None: all), renumbered 0..len(keep)-1."""
    cfg = model.config
    if keep is None:
        keep = list(range(cfg.n_layer))
    for k in keep:
        if k < 0 or k >= cfg.n_layer:
            raise ValueError(f"layer {k} out of range (the model has {cfg.n_layer})")
    if "rope_freqs.weight" in model.w:
        raise ValueError("rope_freqs.weight (RoPE frequency factors) is not implemented here")
    params = {}
    params["token_embd.weight"] = onp.array(model.w["token_embd.weight"], dtype=onp.float64)
    for i, src in enumerate(keep):
        sp = f"blk.{src}."
        dp = f"blk.{i}."
        for name, arr in model.w.items():
            if name.startswith(sp):
                params[dp + name[len(sp):]] = onp.array(arr, dtype=onp.float64)
    params["output_norm.weight"] = onp.array(model.w["output_norm.weight"], dtype=onp.float64)
    tied = _is_tied(model)
    if not tied:
        params["output.weight"] = onp.array(model.w["output.weight"], dtype=onp.float64)
    if "output.bias" in model.w:
        raise ValueError("output.bias is not implemented here")
    scfg = llama_ref.Config(model.meta, cfg.arch)
    scfg.n_layer = len(keep)
    return Student(scfg, params, tied, bos_id(model))


# ----------------------------------------------------------------------------------------
# the differentiable forward (autograd.numpy); x is [B, T, features]

def _rms_norm(x, w, eps):
    ms = anp.mean(x * x, axis=-1, keepdims=True)
    return x / anp.sqrt(ms + eps) * w


def _linear(p, x, wname, bname=None):
    y = anp.dot(x, p[wname].T)
    if bname is not None and bname in p:
        y = y + p[bname]
    return y


def _rope_tables(cfg, T):
    half = cfg.n_rot // 2
    inv = onp.array([cfg.rope_base ** (-2.0 * i / cfg.n_rot) for i in range(half)])
    pos = onp.arange(T, dtype=onp.float64) * cfg.rope_pos_scale
    ang = pos[:, None] * inv[None, :]  # [T, half]
    return onp.cos(ang)[None, :, None, :], onp.sin(ang)[None, :, None, :]  # [1, T, 1, half]


def _rope(x, c, s, cfg):
    """x [B, T, heads, head_dim]: rotate the first n_rot dims. llama pairs adjacent dims
    (2i, 2i+1), qwen2 (NeoX) pairs (i, i + n_rot/2)."""
    B, T, nh, hd = x.shape
    nr = cfg.n_rot
    half = nr // 2
    xr = x[:, :, :, :nr]
    if cfg.rope_neox:
        a = xr[:, :, :, :half]
        b = xr[:, :, :, half:]
        rot = anp.concatenate([a * c - b * s, a * s + b * c], axis=3)
    else:
        pairs = anp.reshape(xr, (B, T, nh, half, 2))
        a = pairs[:, :, :, :, 0]
        b = pairs[:, :, :, :, 1]
        rot = anp.reshape(anp.stack([a * c - b * s, a * s + b * c], axis=4), (B, T, nh, nr))
    if nr == hd:
        return rot
    return anp.concatenate([rot, x[:, :, :, nr:]], axis=3)


def _softmax_last(s):
    z = s - anp.max(s, axis=-1, keepdims=True)
    e = anp.exp(z)
    return e / anp.sum(e, axis=-1, keepdims=True)


def _log_softmax(z):
    m = anp.max(z, axis=-1, keepdims=True)
    zs = z - m
    return zs - anp.log(anp.sum(anp.exp(zs), axis=-1, keepdims=True))


def forward(params, cfg, tied, tokens):
    """Logits [B*T, vocab] of the token array [B, T] (every sequence at positions 0..T-1)."""
    tokens = onp.asarray(tokens, dtype=onp.int64)
    B, T = tokens.shape
    H, KV, hd = cfg.n_head, cfg.n_head_kv, cfg.head_dim
    G = H // KV
    if cfg.head_dim_v != hd:
        raise ValueError("value heads of another size than key heads are not implemented here")
    c, s = _rope_tables(cfg, T)
    causal = onp.tril(onp.ones((T, T), dtype=bool))  # [query, key]: key <= query
    scale = 1.0 / math.sqrt(hd)
    x = anp.reshape(params["token_embd.weight"][tokens.reshape(-1)], (B, T, cfg.n_embd))
    for il in range(cfg.n_layer):
        p = f"blk.{il}."
        h = _rms_norm(x, params[p + "attn_norm.weight"], cfg.eps)
        q = _linear(params, h, p + "attn_q.weight", p + "attn_q.bias")
        k = _linear(params, h, p + "attn_k.weight", p + "attn_k.bias")
        v = _linear(params, h, p + "attn_v.weight", p + "attn_v.bias")
        q = _rope(anp.reshape(q, (B, T, H, hd)), c, s, cfg)
        k = _rope(anp.reshape(k, (B, T, KV, hd)), c, s, cfg)
        v = anp.reshape(v, (B, T, KV, hd))
        q5 = anp.reshape(q, (B, T, KV, G, hd))  # head h = group h // G, member h % G
        sc = anp.einsum("btkgd,bskd->bkgts", q5, k) * scale
        sc = anp.where(causal, sc, MASKED)
        att = _softmax_last(sc)
        o = anp.reshape(anp.einsum("bkgts,bskd->btkgd", att, v), (B, T, H * hd))
        x = x + _linear(params, o, p + "attn_output.weight", p + "attn_output.bias")
        h = _rms_norm(x, params[p + "ffn_norm.weight"], cfg.eps)
        g = _linear(params, h, p + "ffn_gate.weight")
        u = _linear(params, h, p + "ffn_up.weight")
        x = x + _linear(params, g / (1.0 + anp.exp(-g)) * u, p + "ffn_down.weight")
    x = _rms_norm(x, params["output_norm.weight"], cfg.eps)
    head = params["token_embd.weight"] if tied else params["output.weight"]
    return anp.reshape(anp.dot(x, head.T), (B * T, -1))


# ----------------------------------------------------------------------------------------
# losses: SUMS over rows (the caller divides by the number of positions)

def kl_sum(s, t, tau):
    """tau^2 sum_rows KL(softmax(t/tau) || softmax(s/tau)); t is a constant."""
    lt = _log_softmax(t / tau)
    ls = _log_softmax(s / tau)
    return tau * tau * anp.sum(anp.exp(lt) * (lt - ls))


def rkl_sum(s, t, tau):
    """tau^2 sum_rows KL(softmax(s/tau) || softmax(t/tau))."""
    lt = _log_softmax(t / tau)
    ls = _log_softmax(s / tau)
    return tau * tau * anp.sum(anp.exp(ls) * (ls - lt))


def ce_sum(s, targets):
    ls = _log_softmax(s)
    return -anp.sum(ls[onp.arange(len(targets)), targets])


def loss_sum(s, teacher, targets, kind, tau=1.0, ce_weight=0.0):
    if kind == "kl":
        return kl_sum(s, teacher, tau)
    if kind == "rkl":
        return rkl_sum(s, teacher, tau)
    if kind == "ce":
        return ce_sum(s, targets)
    if kind == "mix":
        return (1.0 - ce_weight) * kl_sum(s, teacher, tau) + ce_weight * ce_sum(s, targets)
    raise ValueError(f"unknown loss '{kind}'")


# ----------------------------------------------------------------------------------------
# data and schedule

def sequence(stream, off, L, bos):
    """(input ids [L], targets [L]) of the sequence starting at off."""
    if off < 0 or off + L + 1 > len(stream):
        raise ValueError(f"offset {off} + {L} + 1 is past the stream of {len(stream)} tokens")
    inp = [int(x) for x in stream[off:off + L]]
    if bos is not None:
        inp[0] = bos
    tgt = [int(x) for x in stream[off + 1:off + L + 1]]
    return inp, tgt


def lr_at(step, warmup, total, lr, min_lr):
    """Linear warmup lr*(s+1)/W for s < W, then cosine from lr to min_lr over the remaining
    steps (progress (s-W) / max(1, total-W-1))."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    progress = min(max(progress, 0.0), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def total_steps(n_tokens, B, L, A):
    return -(-n_tokens // (B * L * A))


# ----------------------------------------------------------------------------------------
# the trainer

class Trainer:
    """AdamW training of a Student on (teacher logits, targets) batches, in float64.

    opts: loss kind, tau, ce_weight, lr, min_lr, warmup, wd, clip, total (steps),
    freeze_embd."""

    def __init__(self, student, teacher_model, opts):
        self.st = student
        self.teacher = teacher_model
        self.o = dict(opts)
        self.trainable = [n for n in student.names() if self._trains(n)]
        self.m = {n: onp.zeros_like(student.params[n]) for n in self.trainable}
        self.v = {n: onp.zeros_like(student.params[n]) for n in self.trainable}
        self.step_no = 0
        self._tcache = {}

    def _trains(self, name):
        if self.o.get("freeze_embd") and name in ("token_embd.weight", "output.weight"):
            return False
        return True

    def teacher_logits(self, ids):
        key = tuple(ids)
        if key not in self._tcache:
            self._tcache[key] = llama_ref.logits(self.teacher, ids)
        return self._tcache[key]

    def loss_and_grad(self, micro_batches):
        """micro_batches: list of lists of (input ids, targets). Returns (mean loss, grads)."""
        o = self.o
        n_pos = sum(len(inp) for mb in micro_batches for inp, _ in mb)
        frozen = {n: a for n, a in self.st.params.items() if n not in self.trainable}
        total = 0.0
        grads = {n: onp.zeros_like(self.st.params[n]) for n in self.trainable}
        for mb in micro_batches:
            toks = onp.array([inp for inp, _ in mb], dtype=onp.int64)
            tgts = onp.concatenate([onp.array(t, dtype=onp.int64) for _, t in mb])
            need_teacher = o["loss"] != "ce"
            teach = (onp.concatenate([self.teacher_logits(inp) for inp, _ in mb])
                     if need_teacher else None)

            def f(train):
                params = dict(frozen)
                params.update(train)
                s = forward(params, self.st.cfg, self.st.tied, toks)
                return loss_sum(s, teach, tgts, o["loss"], o.get("tau", 1.0),
                                o.get("ce_weight", 0.0)) / n_pos

            val, g = value_and_grad(f)({n: self.st.params[n] for n in self.trainable})
            total += float(val)
            for n in self.trainable:
                grads[n] += g[n]
        return total, grads

    def step(self, micro_batches):
        """One optimizer step; returns {"loss", "lr", "grad_norm"} (the norm before clipping)."""
        o = self.o
        loss, grads = self.loss_and_grad(micro_batches)
        norm = math.sqrt(sum(float(onp.sum(g * g)) for g in grads.values()))
        clip = o.get("clip", 0.0)
        if clip > 0 and norm > clip:
            for n in grads:
                grads[n] = grads[n] * (clip / norm)
        lr = lr_at(self.step_no, o.get("warmup", 0), o["total"], o["lr"], o.get("min_lr", 0.0))
        t = self.step_no + 1
        wd = o.get("wd", 0.0)
        for n in self.trainable:
            g = grads[n]
            self.m[n] = BETA1 * self.m[n] + (1 - BETA1) * g
            self.v[n] = BETA2 * self.v[n] + (1 - BETA2) * g * g
            mh = self.m[n] / (1 - BETA1 ** t)
            vh = self.v[n] / (1 - BETA2 ** t)
            p = self.st.params[n]
            upd = mh / (onp.sqrt(vh) + ADAM_EPS)
            if p.ndim == 2:
                upd = upd + wd * p
            self.st.params[n] = p - lr * upd
        self.step_no += 1
        return {"loss": loss, "lr": lr, "grad_norm": norm}


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="autograd float64 forward of a GGUF model")
    ap.add_argument("model")
    ap.add_argument("--ids", required=True)
    a = ap.parse_args(argv)
    model = llama_ref.load(a.model)
    st = student_from(model)
    ids = [int(x) for x in a.ids.split(",") if x.strip()]
    lg = forward(st.params, st.cfg, st.tied, onp.array([ids]))
    ref = llama_ref.logits(model, ids)
    print("argmax:", " ".join(str(int(i)) for i in onp.argmax(lg, axis=1)))
    print("max |autograd forward - llama_ref| =", float(onp.max(onp.abs(lg - ref))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
