#!/usr/bin/env bash
# Quality, size and speed of every quantization type on one model: quantizes the model to each
# type (round to nearest, and with --clip-search where it applies), then one `slimlm eval` run
# over all of them against the original: size, bits per weight, wikitext-2 perplexity (ctx 512,
# the same windows for all), KL and top-1 agreement against the original, tg128.
#
#   bench/quant_table.sh OUTDIR [MODEL]     (CHUNKS=20 TG=128 THREADS=2 TYPES="..." CLIP="...")
#
# Writes OUTDIR/*.gguf, OUTDIR/eval.json and prints the table.
set -eu
BIN=${BIN:-build/slimlm}
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/quant_table.sh OUTDIR [MODEL]}
MODEL=${2:-$("$BIN" info 2>/dev/null | sed -n "s/^file: *//p" | head -1)}
[ -n "$MODEL" ] || MODEL=${SLIMLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slimlm}/SmolLM2-135M-Instruct.Q4_1.gguf
TEXT=${TEXT:-../shared/data/wikitext2-test.txt}
CHUNKS=${CHUNKS:-20}
TG=${TG:-128}
THREADS=${THREADS:-2}
TYPES=${TYPES:-"q8_0 q5_1 q5_0 q4_1 q4_0 q8g32 q8g32a q8g64 q8g64a q8g128 q8g128a q4g32 q4g32a q4g64 q4g64a q4g128 q4g128a q3g32 q3g32a q3g64 q3g64a q3g128 q3g128a q2g32 q2g32a q2g64 q2g64a q2g128 q2g128a"}
CLIP=${CLIP:-"q4_0 q4g128 q4g128a q3g128 q3g128a q3g64a q2g64a q2g32a"}
mkdir -p "$OUT"
args=()
for t in $TYPES; do
  [ -s "$OUT/$t.gguf" ] || "$BIN" quantize -m "$MODEL" -o "$OUT/$t.gguf" --type "$t" -t "$THREADS" -q >/dev/null
  args+=(-m "$OUT/$t.gguf")
done
for t in $CLIP; do
  [ -s "$OUT/$t-clip.gguf" ] || "$BIN" quantize -m "$MODEL" -o "$OUT/$t-clip.gguf" --type "$t" --clip-search -t "$THREADS" -q >/dev/null
  args+=(-m "$OUT/$t-clip.gguf")
done
"$BIN" eval "${args[@]}" --base "$MODEL" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" --tg "$TG" -t "$THREADS" \
  --json "$OUT/eval.json"
