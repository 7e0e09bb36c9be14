#!/usr/bin/env bash
# `slimlm distill` on tiny random models: a student equal to its teacher has zero KL and is
# written back unchanged; layer subsets map the right teacher layers; training lowers the
# loss; runs are deterministic and a resumed run gives the same bytes as an uninterrupted
# one; LoRA and quantized outputs load; a parameter-shared student trains its shared matrices
# and deltas in place; bad input is refused cleanly.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh
VALID=../shared/data/wikitext2-valid.txt
if [ ! -f "$VALID" ]; then echo "FAIL: $VALID not found"; summary e2e_distill; exit 1; fi
python3 tests/reference/make_tiny_model.py "$TMP/t.gguf" --layers 4 --dim 64 --type f32 >/dev/null
python3 tests/reference/make_tiny_model.py "$TMP/other.gguf" --layers 2 --dim 64 --vocab 280 --type f32 >/dev/null
head -c 120000 "$VALID" >"$TMP/text.txt"
D=(--teacher "$TMP/t.gguf" --data "$TMP/text.txt" --seq 32 --batch 4 -t 1 -q)
loss_of() { sed -n "${2}p" "$1" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }

# 1. a student equal to the teacher, lr 0: KL 0 at every step, weights written back unchanged
"$BIN" distill "${D[@]}" -o "$TMP/same.gguf" --tokens 256 --lr 0 --min-lr 0 --type f32 --log "$TMP/same.jsonl" >"$TMP/out" 2>"$TMP/err"
check "identity student exits 0" test $? -eq 0
check "KL of the teacher against itself is 0 (< 1e-5)" awk -F'"loss":' '{split($2, a, ","); if (a[1] + 0 > 1e-5 || a[1] + 0 < -1e-5) bad = 1} END {exit bad || NR != 2}' "$TMP/same.jsonl"
check "lr 0: every tensor equals the teacher's" python3 - "$TMP/t.gguf" "$TMP/same.gguf" <<'EOF'
import sys, numpy as np
from gguf import GGUFReader
a = {t.name: np.asarray(t.data) for t in GGUFReader(sys.argv[1]).tensors}
b = {t.name: np.asarray(t.data) for t in GGUFReader(sys.argv[2]).tensors}
sys.exit(0 if set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a) else 1)
EOF

# 2. layer subsets: the right teacher layers (lr 0), block_count, metadata
"$BIN" distill "${D[@]}" -o "$TMP/keep.gguf" --keep-layers 0,2-3 --tokens 128 --lr 0 --min-lr 0 >"$TMP/out" 2>&1
check "--keep-layers exits 0" test $? -eq 0
check "--keep-layers 0,2-3: layers 0,1,2 are teacher layers 0,2,3; block_count 3" python3 - "$TMP/t.gguf" "$TMP/keep.gguf" <<'EOF'
import sys, numpy as np
from gguf import GGUFReader
r = GGUFReader(sys.argv[2])
a = {t.name: np.asarray(t.data) for t in GGUFReader(sys.argv[1]).tensors}
b = {t.name: np.asarray(t.data) for t in r.tensors}
ok = int(r.fields["llama.block_count"].parts[-1][0]) == 3
for i, j in enumerate([0, 2, 3]):
    for k in [n for n in a if n.startswith(f"blk.{j}.")]:
        ok &= np.array_equal(a[k], b[k.replace(f"blk.{j}.", f"blk.{i}.", 1)])
ok &= not any(n.startswith("blk.3.") for n in b)
sys.exit(0 if ok else 1)
EOF
"$BIN" info -m "$TMP/keep.gguf" >"$TMP/meta" 2>&1
check "metadata: slimlm.distill.layers" grep -q 'slimlm.distill.layers (string) = "0,2,3"' "$TMP/meta"

# 3. training lowers the loss (30 steps), the output runs
"$BIN" distill "${D[@]}" -o "$TMP/half.gguf" --every-other --tokens 3840 --lr 3e-3 --log "$TMP/half.jsonl" >"$TMP/out" 2>&1
check "--every-other exits 0" test $? -eq 0
check "30 step lines logged" test "$(grep -c '"offsets"' "$TMP/half.jsonl")" -eq 30
f=$(loss_of "$TMP/half.jsonl" 1); l=$(loss_of "$TMP/half.jsonl" 30)
check "loss decreases: first $f, last $l (below 80%)" awk -v f="$f" -v l="$l" 'BEGIN {exit !(l < 0.8 * f)}'
check "offsets in [0, n_train - L - 1], 4 per step" python3 - "$TMP/half.jsonl" <<'EOF'
import sys, json
rows = [json.loads(l) for l in open(sys.argv[1])]
offs = [o for r in rows for o in r["offsets"]]
sys.exit(0 if all(len(r["offsets"]) == 4 for r in rows) and min(offs) >= 0 and len(set(offs)) > 100 else 1)
EOF
"$BIN" info -m "$TMP/half.gguf" >"$TMP/meta" 2>&1
check "--every-other: block_count 2" grep -q 'llama.block_count (uint32) = 2' "$TMP/meta"
"$BIN" perplexity -m "$TMP/half.gguf" -f "$TMP/text.txt" --ctx 64 --chunks 2 -t 1 >"$TMP/ppl" 2>&1
check "the student loads in perplexity" grep -q 'perplexity: [0-9]' "$TMP/ppl"
"$BIN" run -m "$TMP/half.gguf" -p "The" -n 4 --temp 0 -t 1 >/dev/null 2>&1
check "the student runs" test $? -eq 0

# 4. determinism and resume: bytes identical
R=(--every-other --tokens 1280 --lr 3e-3 --loss mix --ce-weight 0.3 --gen-frac 0.5 --ckpt-every 4)
"$BIN" distill "${D[@]}" "${R[@]}" -o "$TMP/a.gguf" >/dev/null 2>&1
"$BIN" distill "${D[@]}" "${R[@]}" -o "$TMP/b.gguf" >/dev/null 2>&1
check "two runs with the same seed give identical bytes" cmp -s "$TMP/a.gguf" "$TMP/b.gguf"
"$BIN" distill "${D[@]}" "${R[@]}" -o "$TMP/c.gguf" --ckpt "$TMP/c.ckpt" --stop-after 3 >/dev/null 2>&1
check "--stop-after 3: checkpoint written, no output" test -s "$TMP/c.ckpt" -a ! -e "$TMP/c.gguf"
"$BIN" distill "${D[@]}" "${R[@]}" -o "$TMP/c.gguf" --ckpt "$TMP/c.ckpt" --resume "$TMP/c.ckpt" >/dev/null 2>&1
check "resumed run exits 0" test $? -eq 0
check "interrupted + resumed gives the uninterrupted bytes" cmp -s "$TMP/a.gguf" "$TMP/c.gguf"
expect_error "resume with another batch is refused" "$BIN" distill "${D[@]}" "${R[@]}" --batch 2 -o "$TMP/d.gguf" --resume "$TMP/c.ckpt"
check "the mismatch names the batch" grep -q "batch is '4' in the checkpoint but '2'" "$TMP/e"
check "no output after a refused resume" test ! -e "$TMP/d.gguf"
head -c 1000 "$TMP/c.ckpt" >"$TMP/trunc.ckpt"
expect_error "truncated checkpoint refused" "$BIN" distill "${D[@]}" "${R[@]}" -o "$TMP/d.gguf" --resume "$TMP/trunc.ckpt"

# 5. drop-block: a distance table, the choice, block_count
"$BIN" distill "${D[@]}" -o "$TMP/drop.gguf" --drop-block 2 --tokens 256 >"$TMP/out" 2>&1
check "--drop-block 2 exits 0" test $? -eq 0
check "distance table of 3 candidate blocks" test "$(grep -cE '^[0-9]+-[0-9]+ +[0-9.]+' "$TMP/out")" -eq 3
check "the dropped block is the one of least distance" python3 - "$TMP/out" <<'EOF'
import sys, re
rows = [l.split() for l in open(sys.argv[1]) if re.match(r"^\d+-\d+ +[0-9.]+", l)]
best = min(rows, key=lambda r: float(r[1]))
sys.exit(0 if "<-" in best else 1)
EOF
"$BIN" info -m "$TMP/drop.gguf" >"$TMP/meta" 2>&1
check "--drop-block 2: block_count 2" grep -q 'llama.block_count (uint32) = 2' "$TMP/meta"

# 6. LoRA (merged) and a quantized output load; held-out evaluation is logged
"$BIN" distill "${D[@]}" -o "$TMP/lora.gguf" --lora 4 --tokens 512 --lr 1e-2 --eval-every 2 --eval-tokens 64 --log "$TMP/lora.jsonl" >"$TMP/out" 2>&1
check "--lora exits 0" test $? -eq 0
check "eval lines logged (steps 0, 2, 4)" test "$(grep -c '"eval_kl"' "$TMP/lora.jsonl")" -eq 3
"$BIN" run -m "$TMP/lora.gguf" -p "The" -n 4 --temp 0 -t 1 >/dev/null 2>&1
check "the LoRA student runs" test $? -eq 0
check "LoRA changed the weights (merged)" python3 - "$TMP/t.gguf" "$TMP/lora.gguf" <<'EOF'
import sys, numpy as np
from gguf import GGUFReader
a = {t.name: np.asarray(t.data, dtype=np.float32) for t in GGUFReader(sys.argv[1]).tensors}
b = {t.name: np.asarray(t.data, dtype=np.float32) for t in GGUFReader(sys.argv[2]).tensors}
sys.exit(0 if not np.array_equal(a["blk.0.attn_q.weight"], b["blk.0.attn_q.weight"]) and not any("lora" in n for n in b) else 1)
EOF
"$BIN" distill "${D[@]}" -o "$TMP/q8.gguf" --every-other --tokens 256 --type q8_0 >"$TMP/out" 2>&1
check "--type q8_0 exits 0" test $? -eq 0
"$BIN" info -m "$TMP/q8.gguf" >"$TMP/meta" 2>&1
check "--type q8_0: layer matrices are q8_0" grep -qE 'blk\.1\.ffn_down\.weight +q8_0' "$TMP/meta"
"$BIN" perplexity -m "$TMP/q8.gguf" -f "$TMP/text.txt" --ctx 64 --chunks 2 -t 1 >"$TMP/ppl" 2>&1
check "the q8_0 student loads" grep -q 'perplexity: [0-9]' "$TMP/ppl"
check "no temporary file left" test -z "$(ls "$TMP" | grep '\.tmp')"

# 7. a separate student file with the teacher's vocabulary
"$BIN" distill "${D[@]}" -o "$TMP/st.gguf" --student "$TMP/half.gguf" --tokens 256 --loss rkl --freeze-embd >"$TMP/out" 2>&1
check "--student with the same vocabulary exits 0" test $? -eq 0
"$BIN" info -m "$TMP/st.gguf" >"$TMP/meta" 2>&1
check "--student keeps its 2 layers" grep -q 'llama.block_count (uint32) = 2' "$TMP/meta"
check "--freeze-embd: token_embd unchanged" python3 - "$TMP/half.gguf" "$TMP/st.gguf" <<'EOF2'
import sys, numpy as np
from gguf import GGUFReader
a = {t.name: np.asarray(t.data) for t in GGUFReader(sys.argv[1]).tensors}
b = {t.name: np.asarray(t.data) for t in GGUFReader(sys.argv[2]).tensors}
sys.exit(0 if np.array_equal(a["token_embd.weight"], b["token_embd.weight"]) and not np.array_equal(a["blk.0.ffn_up.weight"], b["blk.0.ffn_up.weight"]) else 1)
EOF2

# 7b. a parameter-shared student (slimlm share): the shared matrices stay shared (one copy in the
# table, gradients of every layer using them added), the deltas train and are written as deltas
"$BIN" share -m "$TMP/t.gguf" -o "$TMP/sh.gguf" --groups 2 --rank 4 -q >/dev/null 2>&1
check "share for the shared student exits 0" test $? -eq 0
"$BIN" distill "${D[@]}" --student "$TMP/sh.gguf" -o "$TMP/sh0.gguf" --tokens 256 --lr 0 --min-lr 0 --type f32 >"$TMP/out" 2>&1
check "shared student, lr 0: exits 0" test $? -eq 0
"$BIN" logits -m "$TMP/sh.gguf" --ids 5,17,99,3,250,12 --out "$TMP/sh.lg" --isa ref -t 1 >/dev/null 2>&1
"$BIN" logits -m "$TMP/sh0.gguf" --ids 5,17,99,3,250,12 --out "$TMP/sh0.lg" --isa ref -t 1 >/dev/null 2>&1
check "shared student, lr 0: logits unchanged" cmp -s "$TMP/sh.lg" "$TMP/sh0.lg"
"$BIN" distill "${D[@]}" --student "$TMP/sh.gguf" -o "$TMP/sh1.gguf" --tokens 1920 --lr 3e-3 --log "$TMP/sh.jsonl" >"$TMP/out" 2>&1
check "shared student training exits 0" test $? -eq 0
f=$(loss_of "$TMP/sh.jsonl" 1); l=$(loss_of "$TMP/sh.jsonl" 15)
check "shared student: loss decreases: first $f, last $l" awk -v f="$f" -v l="$l" 'BEGIN {exit !(l < 0.9 * f)}'
check "shared student: same tensors as its source (matrices once, deltas kept), layer map kept, weights changed" python3 - "$TMP/sh.gguf" "$TMP/sh1.gguf" <<'EOF'
import sys, numpy as np
from gguf import GGUFReader
ra, rb = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
a = {t.name: np.asarray(t.data, dtype=np.float64) for t in ra.tensors}
b = {t.name: np.asarray(t.data, dtype=np.float64) for t in rb.tensors}
ok = set(a) == set(b) and "blk.1.attn_q.weight" not in b and "blk.1.attn_q.delta_a" in b
ok &= list(rb.fields["slimlm.share.layer_map"].parts[-1]) == list(ra.fields["slimlm.share.layer_map"].parts[-1])
ok &= not np.allclose(a["blk.0.ffn_up.weight"], b["blk.0.ffn_up.weight"])
ok &= not np.allclose(a["blk.1.ffn_up.delta_b"], b["blk.1.ffn_up.delta_b"])
sys.exit(0 if ok else 1)
EOF

# a shared student with cross-layer KV sharing as its own teacher: KL 0 (the training forward is
# the engine's), and training keeps the structure
"$BIN" share -m "$TMP/t.gguf" -o "$TMP/kvs.gguf" --groups 2 --rank 4 --kv-share 2 -q >/dev/null 2>&1
"$BIN" distill --teacher "$TMP/kvs.gguf" --data "$TMP/text.txt" --seq 32 --batch 4 -t 1 -q --student "$TMP/kvs.gguf" -o "$TMP/kvs0.gguf" --tokens 256 --lr 0 --min-lr 0 --log "$TMP/kvs.jsonl" >"$TMP/out" 2>&1
check "KV-shared student against itself exits 0" test $? -eq 0
check "KV-shared student against itself: KL 0 (< 1e-5)" awk -F'"loss":' '{split($2, a, ","); if (a[1] + 0 > 1e-5 || a[1] + 0 < -1e-5) bad = 1} END {exit bad || NR != 2}' "$TMP/kvs.jsonl"
"$BIN" distill "${D[@]}" --student "$TMP/kvs.gguf" -o "$TMP/kvs1.gguf" --tokens 1920 --lr 3e-3 --log "$TMP/kvs1.jsonl" >"$TMP/out" 2>&1
check "KV-shared student training exits 0" test $? -eq 0
f=$(loss_of "$TMP/kvs1.jsonl" 1); l=$(loss_of "$TMP/kvs1.jsonl" 15)
check "KV-shared student: loss decreases: first $f, last $l" awk -v f="$f" -v l="$l" 'BEGIN {exit !(l < 0.9 * f)}'
check "KV-shared student: same tensors as its source, KV map kept" python3 - "$TMP/kvs.gguf" "$TMP/kvs1.gguf" <<'EOF'
import sys
from gguf import GGUFReader
ra, rb = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
ok = {t.name for t in ra.tensors} == {t.name for t in rb.tensors}
ok &= list(rb.fields["slimlm.share.kv_map"].parts[-1]) == list(ra.fields["slimlm.share.kv_map"].parts[-1])
ok &= "blk.1.attn_k.weight" not in {t.name for t in rb.tensors}
sys.exit(0 if ok else 1)
EOF

# a shared teacher distilled into an unshared student (LoRA, lr 0): every layer's own matrices
# with the deltas folded in, no sharing metadata left; logits unchanged
"$BIN" distill "${D[@]/$TMP\/t.gguf/$TMP/sh.gguf}" -o "$TMP/unsh.gguf" --lora 4 --tokens 128 --lr 0 --min-lr 0 --type f32 >"$TMP/out" 2>&1
check "shared teacher, LoRA student exits 0" test $? -eq 0
"$BIN" logits -m "$TMP/unsh.gguf" --ids 5,17,99,3,250,12 --out "$TMP/unsh.lg" --isa ref -t 1 >/dev/null 2>&1
check "unshared student of a shared teacher: logits unchanged, no sharing keys" python3 - "$TMP/sh.lg" "$TMP/unsh.lg" "$TMP/unsh.gguf" <<'EOF'
import sys, numpy as np
from gguf import GGUFReader
a, b = np.fromfile(sys.argv[1], "<f4"), np.fromfile(sys.argv[2], "<f4")
r = GGUFReader(sys.argv[3])
ok = a.size == b.size and np.abs(a - b).max() <= 1e-4 * (a.max() - a.min())
ok &= not any(k.startswith("slimlm.share.") for k in r.fields) and "blk.1.attn_q.weight" in {t.name for t in r.tensors}
sys.exit(0 if ok else 1)
EOF
# weight sharing in a loop with KV sharing in threes: a weight source that reads another
# layer's keys keeps wk / wv for the layers that use them; against itself KL 0
python3 tests/reference/make_tiny_model.py "$TMP/t6.gguf" --layers 6 --dim 64 --type f32 >/dev/null
"$BIN" share -m "$TMP/t6.gguf" -o "$TMP/lkv.gguf" --loop 2 --kv-share 3 --rank 4 -q >/dev/null 2>&1
"$BIN" distill --teacher "$TMP/lkv.gguf" --student "$TMP/lkv.gguf" --data "$TMP/text.txt" --seq 32 --batch 4 -t 1 -q -o "$TMP/lkv0.gguf" --tokens 256 --lr 0 --min-lr 0 --log "$TMP/lkv.jsonl" >"$TMP/out" 2>&1
check "loop + KV-shared student against itself: KL 0 (< 1e-5)" awk -F'"loss":' '{split($2, a, ","); if (a[1] + 0 > 1e-5 || a[1] + 0 < -1e-5) bad = 1} END {exit bad || NR != 2}' "$TMP/lkv.jsonl"
# teacher-sampled sequences longer than the split-key threshold: the same bytes with 1 and 2 threads
python3 tests/reference/make_tiny_model.py "$TMP/tl.gguf" --layers 2 --dim 64 --ctx 512 --type f32 >/dev/null
for t in 1 2; do
  "$BIN" distill --teacher "$TMP/tl.gguf" --every-other --data "$TMP/text.txt" --seq 288 --batch 2 --gen-frac 1 -q \
    -o "$TMP/g$t.gguf" --tokens 576 -t $t >"$TMP/out" 2>&1
done
check "teacher-sampled sequences of 288: -t 1 and -t 2 give the same bytes" cmp -s "$TMP/g1.gguf" "$TMP/g2.gguf"

# 8. refused input: one-line error, exit 1, no output
expect_error "student with another vocabulary" "$BIN" distill "${D[@]}" --student "$TMP/other.gguf" -o "$TMP/x.gguf"
check "the vocabulary mismatch is named" grep -q "vocabulary" "$TMP/e"
expect_error "no teacher" "$BIN" distill -o "$TMP/x.gguf"
expect_error "no output" "$BIN" distill --teacher "$TMP/t.gguf"
expect_error "unknown flag" "$BIN" distill "${D[@]}" -o "$TMP/x.gguf" --bogus
expect_error "bad loss" "$BIN" distill "${D[@]}" -o "$TMP/x.gguf" --loss l2
expect_error "bad layer list" "$BIN" distill "${D[@]}" -o "$TMP/x.gguf" --keep-layers 0-9
expect_error "two student choices" "$BIN" distill "${D[@]}" -o "$TMP/x.gguf" --every-other --drop-block 1
expect_error "drop-block of every layer" "$BIN" distill "${D[@]}" -o "$TMP/x.gguf" --drop-block 4
expect_error "bad type" "$BIN" distill "${D[@]}" -o "$TMP/x.gguf" --type q9_9
expect_error "negative lr" "$BIN" distill "${D[@]}" -o "$TMP/x.gguf" --lr -1
expect_error "missing data" "$BIN" distill "${D[@]}" -o "$TMP/x.gguf" --data "$TMP/none.txt"
expect_error "output is the teacher" "$BIN" distill "${D[@]}" -o "$TMP/t.gguf"
check "no output file after errors" test ! -e "$TMP/x.gguf"
"$BIN" distill --help >"$TMP/help" 2>&1
check "--help exits 0 with usage" grep -q 'usage: slimlm distill' "$TMP/help"

summary e2e_distill
