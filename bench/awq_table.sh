#!/usr/bin/env bash
# Round to nearest vs clip search vs AWQ (and AWQ + clip search) at 4-bit g128, 3-bit g128 and
# 2-bit g64 (asymmetric), embeddings and output head kept at their input type in every row;
# then one `slimlm eval` against the original: size, bits per weight, wikitext-2 perplexity
# (ctx 512, the same windows), KL, top-1. One calibration (wikitext-2 *valid*) serves all AWQ runs.
#
#   bench/awq_table.sh OUTDIR [MODEL]        (CHUNKS=20 THREADS=2 SAMPLES=64 SEQ=256 LLAMA_QUANTIZE=path)
#
# With LLAMA_QUANTIZE set (llama.cpp's llama-quantize, built outside this repository), also
# evaluates its Q4_0, Q4_1 and Q4_K_M of the same original for comparison.
set -eu
BIN=${BIN:-build/slimlm}
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/awq_table.sh OUTDIR [MODEL]}
MODEL=${2:-$("$BIN" info 2>/dev/null | sed -n "s/^file: *//p" | head -1)}
TEXT=${TEXT:-../shared/data/wikitext2-test.txt}
VALID=${VALID:-../shared/data/wikitext2-valid.txt}
CHUNKS=${CHUNKS:-20}
THREADS=${THREADS:-2}
SAMPLES=${SAMPLES:-64}
SEQ=${SEQ:-256}
CONFIGS=${CONFIGS:-"4:128 3:128 2:64"}
mkdir -p "$OUT"
KEEP=(--keep embd --keep output)
args=()
for c in $CONFIGS; do
  b=${c%%:*} g=${c##*:} t=q${c%%:*}g${c##*:}a
  [ -s "$OUT/$t-rtn.gguf" ] || "$BIN" quantize -m "$MODEL" -o "$OUT/$t-rtn.gguf" --type "$t" "${KEEP[@]}" -t "$THREADS" -q >/dev/null
  [ -s "$OUT/$t-clip.gguf" ] || "$BIN" quantize -m "$MODEL" -o "$OUT/$t-clip.gguf" --type "$t" --clip-search "${KEEP[@]}" -t "$THREADS" -q >/dev/null
  if [ ! -s "$OUT/calib.bin" ]; then
    "$BIN" awq -m "$MODEL" -o "$OUT/$t-awq.gguf" --bits "$b" --group "$g" --text "$VALID" --samples "$SAMPLES" \
      --seq "$SEQ" --save-calib "$OUT/calib.bin" -t "$THREADS" >"$OUT/$t-awq.log" 2>&1
  fi
  [ -s "$OUT/$t-awq.gguf" ] || "$BIN" awq -m "$MODEL" -o "$OUT/$t-awq.gguf" --bits "$b" --group "$g" --calib "$OUT/calib.bin" -t "$THREADS" >"$OUT/$t-awq.log" 2>&1
  [ -s "$OUT/$t-awq-clip.gguf" ] || "$BIN" awq -m "$MODEL" -o "$OUT/$t-awq-clip.gguf" --bits "$b" --group "$g" --clip-search --calib "$OUT/calib.bin" -t "$THREADS" >"$OUT/$t-awq-clip.log" 2>&1
  grep -E '^awq: calibration' "$OUT/$t-awq.log" || true
  args+=(-m "$OUT/$t-rtn.gguf" -m "$OUT/$t-clip.gguf" -m "$OUT/$t-awq.gguf" -m "$OUT/$t-awq-clip.gguf")
done
if [ -n "${LLAMA_QUANTIZE:-}" ]; then
  for t in Q4_0 Q4_1 Q4_K_M; do
    [ -s "$OUT/llama-$t.gguf" ] || "$LLAMA_QUANTIZE" --allow-requantize "$MODEL" "$OUT/llama-$t.gguf" "$t" "$THREADS" >/dev/null 2>&1
    args+=(-m "$OUT/llama-$t.gguf")
  done
fi
"$BIN" eval "${args[@]}" --base "$MODEL" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" -t "$THREADS" --json "$OUT/eval.json"
