#!/usr/bin/env bash
# slimlm quantize --type q4_k / q6_k: the commands succeed, the 576-wide matrices fall back to
# q5_0 / q8_0 with a note (llama.cpp's mapping) while the 1536-wide ffn_down matrices get the
# K type, general.file_type is llama.cpp's value, the files generate text, and perplexity on
# two 128-token windows is finite, sane, and not worse for q6_k than for q4_k.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh
TEXT=../shared/data/wikitext2-test.txt

declare -A PPL
for spec in q4_k:q5_0:14 q6_k:q8_0:18; do
  IFS=: read -r t fb ft <<<"$spec"
  "$BIN" quantize -m "$MODEL" -o "$TMP/$t.gguf" --type $t -t 2 >"$TMP/$t.txt" 2>"$TMP/$t.err"
  check "quantize to $t exits 0 ($(head -c 200 "$TMP/$t.err"))" test $? -eq 0
  check "$t: 30 ffn_down matrices are $t" \
    test "$(grep -cE "^blk\.[0-9]+\.ffn_down\.weight +q4_1 -> $t +[0-9]+ +[0-9]+ +0\.[0-9]+ *$" "$TMP/$t.txt")" -eq 30
  check "$t: 181 matrices of 576 columns fall back to $fb with a note" \
    test "$(grep -cE "^\S+ +q(4_1|8_0) -> $fb .* row length not a multiple of 256; $fb instead$" "$TMP/$t.txt")" -eq 181
  check "$t: token_embd falls back" grep -qE "^token_embd\.weight +q8_0 -> $fb " "$TMP/$t.txt"
  "$BIN" info "$TMP/$t.gguf" >"$TMP/$t.info" 2>&1
  check "$t: info exits 0" test $? -eq 0
  check "$t: general.file_type $ft" grep -qE "general.file_type \(uint32\) = $ft$" "$TMP/$t.info"
  check "$t: info lists 30 $t tensors" test "$(grep -cE "^[0-9]+ +blk\.[0-9]+\.ffn_down\.weight +$t " "$TMP/$t.info")" -eq 30
  "$BIN" run -m "$TMP/$t.gguf" -p "The capital of France is" -n 8 --temp 0 -t 2 >"$TMP/$t.gen" 2>"$TMP/$t.generr"
  check "$t: run exits 0 ($(head -c 200 "$TMP/$t.generr"))" test $? -eq 0
  check "$t: run generates text" test "$(wc -c <"$TMP/$t.gen")" -gt 26
  "$BIN" perplexity -m "$TMP/$t.gguf" -f "$TEXT" --ctx 128 --chunks 2 -t 2 --json "$TMP/$t.json" >"$TMP/$t.ppl" 2>&1
  check "$t: perplexity exits 0 ($(tail -n 1 "$TMP/$t.ppl"))" test $? -eq 0
  PPL[$t]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' "$TMP/$t.json" 2>/dev/null)
  # the fixture (Q4_1) scores about 20 on these windows; a broken K packing gives hundreds
  check "$t: perplexity ${PPL[$t]:-?} finite and below 40" \
    python3 -c 'import math,sys; p=float(sys.argv[1]); sys.exit(0 if math.isfinite(p) and 1 < p < 40 else 1)' "${PPL[$t]:-nan}"
  rm -f "$TMP/$t.gguf"
done
echo "perplexity (2 windows of 128): q4_k ${PPL[q4_k]:-?}, q6_k ${PPL[q6_k]:-?}"
check "q6_k perplexity ${PPL[q6_k]:-?} <= q4_k's ${PPL[q4_k]:-?} + 2%" \
  python3 -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(0 if a <= b * 1.02 else 1)' "${PPL[q6_k]:-nan}" "${PPL[q4_k]:-nan}"

# Determinism: the same bytes whatever the thread count (the ffn_down rows are split).
"$BIN" quantize -m "$MODEL" -o "$TMP/a.gguf" --type q4_k -t 1 -q >/dev/null 2>&1 &&
  "$BIN" quantize -m "$MODEL" -o "$TMP/b.gguf" --type q4_k -t 2 -q >/dev/null 2>&1
check "q4_k twice (1 vs 2 threads): byte-identical" cmp -s "$TMP/a.gguf" "$TMP/b.gguf"
rm -f "$TMP/a.gguf" "$TMP/b.gguf"

expect_error "unknown K type q7_k" "$BIN" quantize -m "$MODEL" -o "$TMP/x.gguf" --type q7_k
summary e2e_quant_k
