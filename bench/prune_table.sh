#!/usr/bin/env bash
# Pruning on the fixture: magnitude vs Wanda at sparsity 0.1 .. 0.7 (unstructured, stored in
# the int8 bitmap format), 2:4 (int8 and 4-bit values), structured pruning (FFN channels,
# heads, KV groups, layers), then one `slimlm eval` against the original: size, bits per
# weight, wikitext-2 perplexity (ctx 512, the same windows), KL, top-1. One calibration
# (wikitext-2 *valid*) serves every Wanda and structured run. Speed: bench/speed_table.sh on
# the same directory afterwards.
#
#   bench/prune_table.sh OUTDIR [MODEL]   (CHUNKS=20 THREADS=2 SAMPLES=64 SEQ=256 CALIB=file
#                                          SPARSITIES="0.1 ... 0.7" PART=unstructured|nm|structured|all)
set -eu
BIN=${BIN:-build/slimlm}
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/prune_table.sh OUTDIR [MODEL]}
MODEL=${2:-$("$BIN" info 2>/dev/null | sed -n "s/^file: *//p" | head -1)}
TEXT=${TEXT:-../shared/data/wikitext2-test.txt}
VALID=${VALID:-../shared/data/wikitext2-valid.txt}
CHUNKS=${CHUNKS:-20}
THREADS=${THREADS:-2}
SAMPLES=${SAMPLES:-64}
SEQ=${SEQ:-256}
SPARSITIES=${SPARSITIES:-"0.1 0.2 0.3 0.4 0.5 0.6 0.7"}
PART=${PART:-all}
mkdir -p "$OUT"
CALIB=${CALIB:-$OUT/calib.bin}
if [ ! -s "$CALIB" ]; then
  "$BIN" prune -m "$MODEL" -o "$OUT/.calib-run.gguf" --sparsity 0.5 --text "$VALID" --samples "$SAMPLES" --seq "$SEQ" \
    --save-calib "$CALIB" -t "$THREADS" -q >/dev/null
  rm -f "$OUT/.calib-run.gguf"
fi
args=()
# the unpruned weights in the same value format, to separate rounding from pruning
[ -s "$OUT/dense-q8_0.gguf" ] || "$BIN" quantize -m "$MODEL" -o "$OUT/dense-q8_0.gguf" --type q8_0 --keep embd --keep output -t "$THREADS" -q >/dev/null
[ -s "$OUT/dense-q4_0.gguf" ] || "$BIN" quantize -m "$MODEL" -o "$OUT/dense-q4_0.gguf" --type q4_0 --keep embd --keep output -t "$THREADS" -q >/dev/null
args+=(-m "$OUT/dense-q8_0.gguf" -m "$OUT/dense-q4_0.gguf")
run() { # NAME ARGS...: prune into OUT/NAME.gguf (log in OUT/NAME.log) unless it exists
  local name=$1; shift
  [ -s "$OUT/$name.gguf" ] || "$BIN" prune -m "$MODEL" -o "$OUT/$name.gguf" --calib "$CALIB" -t "$THREADS" "$@" >"$OUT/$name.log" 2>&1
  args+=(-m "$OUT/$name.gguf")
}
if [ "$PART" = all ] || [ "$PART" = unstructured ]; then
  for s in $SPARSITIES; do
    run "magnitude-$s" --method magnitude --sparsity "$s"
    run "wanda-$s" --method wanda --sparsity "$s"
  done
fi
if [ "$PART" = all ] || [ "$PART" = nm ]; then
  run magnitude-2of4 --method magnitude --pattern 2:4
  run wanda-2of4 --method wanda --pattern 2:4
  run wanda-2of4-q4 --method wanda --pattern 2:4 --type sparse4
fi
# structured: the smaller model, then quantized back to the fixture's q4_1 (its wo / w_down come
# out f32 when columns were removed from a block-quantized matrix) so size and speed compare
srun() { # NAME ARGS...
  local name=$1; shift
  [ -s "$OUT/$name.gguf" ] || "$BIN" prune -m "$MODEL" -o "$OUT/$name.gguf" --calib "$CALIB" -t "$THREADS" "$@" >"$OUT/$name.log" 2>&1
  [ -s "$OUT/$name-q4_1.gguf" ] || "$BIN" quantize -m "$OUT/$name.gguf" -o "$OUT/$name-q4_1.gguf" --type q4_1 --keep embd --keep output -t "$THREADS" -q >/dev/null
  args+=(-m "$OUT/$name-q4_1.gguf")
}
if [ "$PART" = all ] || [ "$PART" = structured ]; then
  srun ffn-0.75 --ffn-keep 0.75
  srun ffn-0.5 --ffn-keep 0.5
  srun heads-0.67 --heads-keep 0.67
  srun kv-0.67 --kv-keep 0.67
  srun drop-2 --drop-layers 2 --text "$VALID"
  srun drop-4 --drop-layers 4 --text "$VALID"
  srun drop-6 --drop-layers 6 --text "$VALID"
  srun ffn-0.75-heads-0.67-drop-2 --ffn-keep 0.75 --heads-keep 0.67 --drop-layers 2 --text "$VALID"
fi
"$BIN" eval "${args[@]}" --base "$MODEL" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" -t "$THREADS" --json "$OUT/eval-$PART.json"
