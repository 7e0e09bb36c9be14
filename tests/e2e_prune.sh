#!/usr/bin/env bash
# `slimlm prune` (unstructured and 2:4) on the fixture: the masks equal a numpy oracle's, the
# sparse files compute exactly what the same pruned weights stored densely compute (same
# perplexity to the last digit), the formats and metadata are as asked, and bad input is
# refused cleanly.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh
VALID=../shared/data/wikitext2-valid.txt
TEXT=../shared/data/wikitext2-test.txt
if [ ! -f "$VALID" ] || [ ! -f "$TEXT" ]; then echo "FAIL: ../shared/data texts not found"; summary e2e_prune; exit 1; fi
CAL=(--samples 8 --seq 128 -t 2)
PPL=(-f "$TEXT" --ctx 128 --chunks 4 -t 2)
ppl() { "$BIN" perplexity -m "$1" "${PPL[@]}" 2>/dev/null | sed -n 's/.*[Pp]erplexity[^0-9]*\([0-9.]*\).*/\1/p' | tail -1; }

# 1. magnitude, 40% of every matrix, stored densely in f32: the masks equal numpy's (layers 0, 13, 29)
"$BIN" prune -m "$MODEL" -o "$TMP/mag.gguf" --method magnitude --sparsity 0.4 --type f32 -t 2 >"$TMP/out" 2>"$TMP/err"
check "magnitude prune exits 0" test $? -eq 0
check "a report row per layer (30) and a total" test "$(grep -cE '^[0-9]+ ' "$TMP/out")" -ge 30 -a "$(grep -c '^total ' "$TMP/out")" -eq 1
check "total sparsity 40%" grep -qE '^total +[0-9]+ +[0-9]+ +40\.00%' "$TMP/out"
check "masks equal the numpy oracle (per matrix, ties: earlier first)" python3 - "$MODEL" "$TMP/mag.gguf" 0.4 <<'EOF'
import sys, numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
src, dst, s = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2]), float(sys.argv[3])
orig = {t.name: t for t in src.tensors}
checked = 0
for t in dst.tensors:
    if not t.name.startswith("blk.") or t.name.split(".")[1] not in ("0", "13", "29") or t.name.split(".")[2] not in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
        continue
    o = orig[t.name]
    w = dequantize(o.data, o.tensor_type).astype(np.float32).reshape(-1)
    got = np.asarray(t.data, dtype=np.float32).reshape(-1)
    k = int(np.floor(s * w.size + 0.5))
    order = np.argsort(np.abs(w), kind="stable")
    want = w.copy(); want[order[:k]] = 0
    if not np.array_equal(got, want):
        print(t.name, "differs in", int(np.sum(got != want)), "of", w.size); sys.exit(1)
    checked += 1
sys.exit(0 if checked == 21 else 1)
EOF

# 2. wanda 2:4 into s24q8, and the same pruned weights stored as dense q8_0
"$BIN" prune -m "$MODEL" -o "$TMP/w24.gguf" --pattern 2:4 "${CAL[@]}" --text "$VALID" --save-calib "$TMP/cal.bin" >"$TMP/out" 2>"$TMP/err"
check "wanda 2:4 exits 0" test $? -eq 0
check "calibration saved" test -s "$TMP/cal.bin"
"$BIN" info -m "$TMP/w24.gguf" >"$TMP/meta" 2>&1
check "all 210 layer matrices are s24q8" test "$(grep -cE '^[0-9]+ +blk\.[0-9]+\.(attn|ffn)_[a-z]+\.weight +s24q8 ' "$TMP/meta")" -eq 210
check "embedding kept" grep -qE '^0 +token_embd.weight +q8_0 ' "$TMP/meta"
check "metadata: method and pattern" grep -q 'slimlm.prune.pattern (string) = "2:4"' "$TMP/meta"
"$BIN" prune -m "$MODEL" -o "$TMP/w24d.gguf" --pattern 2:4 --calib "$TMP/cal.bin" --type q8_0 -q -t 2 >/dev/null 2>&1
check "the same prune stored as q8_0 exits 0" test $? -eq 0
# The sparse kernels form the same integer products as q8_0's; a kernel set that also adds
# them in q8_0's order (scalar, avx2) gives the same perplexity to the last digit. (The
# AVX-512 kernels add in another order: their outputs agree to ~1e-7 relative, which the
# 8-bit activation rounding of the next layer can amplify; test_qdot_sp checks them.)
for isa in scalar avx2; do
  a=$(SLIMLM_ISA=$isa ppl "$TMP/w24.gguf"); b=$(SLIMLM_ISA=$isa ppl "$TMP/w24d.gguf")
  check "2:4 sparse kernels ($isa) compute what dense q8_0 computes on the same weights ($a vs $b)" test -n "$a" -a "$a" = "$b"
done

# 3. wanda 50% unstructured into the bitmap format, equal to dense q8_0 of the same weights
"$BIN" prune -m "$MODEL" -o "$TMP/w50.gguf" --sparsity 0.5 --calib "$TMP/cal.bin" -q -t 2 >/dev/null 2>&1
check "wanda 50% exits 0" test $? -eq 0
"$BIN" info -m "$TMP/w50.gguf" >"$TMP/meta" 2>&1
check "all 210 layer matrices are q8s32 (32/64 density)" test "$(grep -cE '^[0-9]+ +blk\.[0-9]+\.(attn|ffn)_[a-z]+\.weight +q8s32 ' "$TMP/meta")" -eq 210
"$BIN" prune -m "$MODEL" -o "$TMP/w50d.gguf" --sparsity 0.5 --calib "$TMP/cal.bin" --type q8_0 -q -t 2 >/dev/null 2>&1
for isa in scalar avx2; do
  a=$(SLIMLM_ISA=$isa ppl "$TMP/w50.gguf"); b=$(SLIMLM_ISA=$isa ppl "$TMP/w50d.gguf")
  check "unstructured sparse kernels ($isa) compute what dense q8_0 computes ($a vs $b)" test -n "$a" -a "$a" = "$b"
done
check "the sparse file is smaller than dense q8_0" test "$(stat -c %s "$TMP/w50.gguf")" -lt "$(stat -c %s "$TMP/w50d.gguf")"
"$BIN" run -m "$TMP/w50.gguf" -p "The capital of France is" -n 8 --temp 0 >"$TMP/gen" 2>/dev/null
check "the pruned model generates" test $? -eq 0 -a -s "$TMP/gen"

# 4. per-tensor rules: layer 0 untouched
"$BIN" prune -m "$MODEL" -o "$TMP/rule.gguf" --method magnitude --sparsity 0.3 --tensor-sparsity 'blk.0.*=0' --type f16 -t 2 >"$TMP/out" 2>&1
check "rules: layer 0 at 0%, layer 1 at 30%" grep -qE '^0 +[0-9]+ +[0-9]+ +0\.00%' "$TMP/out"
check "rules: layer 1 at 30%" grep -qE '^1 +[0-9]+ +[0-9]+ +30\.00%' "$TMP/out"

# 5. structured: a smaller dense model with the new shapes, that runs
"$BIN" prune -m "$MODEL" -o "$TMP/st.gguf" --ffn-keep 0.75 --heads-keep 0.67 --drop-layers 1 --bi-samples 2 \
  --calib "$TMP/cal.bin" --text "$VALID" "${CAL[@]}" >"$TMP/out" 2>&1
check "structured prune exits 0" test $? -eq 0
check "structured report: 29 of 30 layers kept" grep -q 'layers 30 -> 29, ffn 1536 -> 1152, query heads 9 -> 6' "$TMP/out"
"$BIN" info -m "$TMP/st.gguf" >"$TMP/meta" 2>&1
check "metadata: block_count 29" grep -q 'llama.block_count (uint32) = 29' "$TMP/meta"
check "metadata: feed_forward_length 1152" grep -q 'llama.feed_forward_length (uint32) = 1152' "$TMP/meta"
check "metadata: head_count 6" grep -q 'llama.attention.head_count (uint32) = 6' "$TMP/meta"
"$BIN" run -m "$TMP/st.gguf" -p "The capital of France is" -n 8 --temp 0 >"$TMP/gen" 2>/dev/null
check "the structured-pruned model generates" test $? -eq 0 -a -s "$TMP/gen"

# 6. bad input
expect_error "sparsity 1.5" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --sparsity 1.5
expect_error "pattern 3:2" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --pattern 3:2
expect_error "unstructured and structured together" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --sparsity 0.5 --ffn-keep 0.5
expect_error "nothing to prune" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf"
expect_error "no output" "$BIN" prune -m "$MODEL" --sparsity 0.5
expect_error "unknown type" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --sparsity 0.5 --type q9_9
expect_error "unknown method" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --sparsity 0.5 --method random
expect_error "unreadable calibration text" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --sparsity 0.5 --text /nonexistent
expect_error "corrupt calibration file" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --sparsity 0.5 --calib "$TMP/gen"
expect_error "output is the input" "$BIN" prune -m "$MODEL" -o "$MODEL" --sparsity 0.5 --method magnitude
expect_error "drop a layer that does not exist" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --drop 30
expect_error "keep nothing" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --ffn-keep 0
expect_error "--type with structured pruning" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --ffn-keep 0.5 --type f16
expect_error "bad rule" "$BIN" prune -m "$MODEL" -o "$TMP/x.gguf" --tensor-sparsity 'blk.*=2'
check "no output file left by failed runs" test ! -e "$TMP/x.gguf"
"$BIN" prune --help >"$TMP/help" 2>&1
check "--help" grep -q "usage: slimlm prune" "$TMP/help"
summary e2e_prune
