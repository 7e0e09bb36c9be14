#!/usr/bin/env bash
# Weight clustering on the fixture against uniform quantization at the same bits, then
# lossless packing and the Deep-Compression pipeline (prune -> cluster -> pack):
#   - cluster --k K for K = 4 .. 256: plain, weighted (calibration mean x^2 from wikitext-2
#     *valid*), weighted with 0.5% outliers;
#   - quantize to the uniform formats of about the same bits (q2g128, q3g128, q4g128, q5_0,
#     q5_1, q6_k, q8g128), token_embd and output kept as in the clustered files;
#   - pack (own coder and zstd -19) of the clustered files;
#   - prune 50% (Wanda, f16 values) -> cluster --k 16 / --k 32 weighted -> pack;
#   - one `slimlm eval` against the fixture (size, bits per weight, ppl, KL, top-1, tg128),
#     run on the packed pipeline outputs directly.
#
#   bench/cluster_table.sh OUTDIR [MODEL]   (CHUNKS=10 THREADS=2 SAMPLES=32 KS="4 8 16 32 64 128 256"
#                                           PART=cluster|uniform|pack|pipeline|eval|all)
set -eu
BIN=${BIN:-build/slimlm}
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/cluster_table.sh OUTDIR [MODEL]}
MODEL=${2:-$("$BIN" info 2>/dev/null | sed -n "s/^file: *//p" | head -1)}
TEXT=${TEXT:-../shared/data/wikitext2-test.txt}
VALID=${VALID:-../shared/data/wikitext2-valid.txt}
CHUNKS=${CHUNKS:-10}
THREADS=${THREADS:-2}
SAMPLES=${SAMPLES:-32}
KS=${KS:-"4 8 16 32 64 128 256"}
PART=${PART:-all}
mkdir -p "$OUT"
CALIB=$OUT/calib.bin
if [ ! -s "$CALIB" ]; then
  "$BIN" cluster -m "$MODEL" -o "$OUT/.calib-run.gguf" --k 16 --weighted --text "$VALID" --samples "$SAMPLES" \
    --save-calib "$CALIB" --keep 'blk.*' -t "$THREADS" -q >/dev/null 2>&1 || true
  rm -f "$OUT/.calib-run.gguf"
fi
[ -s "$CALIB" ] || { echo "calibration failed" >&2; exit 1; }
models=()
cl() { # NAME ARGS...
  local name=$1; shift
  [ -s "$OUT/$name.gguf" ] || "$BIN" cluster -m "$MODEL" -o "$OUT/$name.gguf" -t "$THREADS" -q "$@" >"$OUT/$name.log" 2>&1
  models+=("$OUT/$name.gguf")
}
qu() { # TYPE
  [ -s "$OUT/$1.gguf" ] || "$BIN" quantize -m "$MODEL" -o "$OUT/$1.gguf" --type "$1" --keep embd --keep output -t "$THREADS" -q >"$OUT/$1.log" 2>&1
  models+=("$OUT/$1.gguf")
}
pk() { # FILE CODEC [LEVEL]: packed copy, sizes appended to OUT/pack.tsv
  local f=$1 codec=$2 lvl=${3:-3} o
  o="${f%.gguf}.$codec$lvl.slmp"
  [ -s "$o" ] || "$BIN" pack "$f" "$o" --codec "$codec" --level "$lvl" -q >/dev/null
  printf '%s\t%s\t%s\t%s\t%s\n' "$(basename "$f")" "$codec" "$lvl" "$(stat -c %s "$f")" "$(stat -c %s "$o")" >>"$OUT/pack.tsv"
}
if [ "$PART" = all ] || [ "$PART" = cluster ]; then
  for k in $KS; do
    cl "cb$k" --k "$k"
    cl "cb$k-w" --k "$k" --calib "$CALIB"
    cl "cb$k-w-o" --k "$k" --calib "$CALIB" --outliers 0.5%
  done
fi
if [ "$PART" = all ] || [ "$PART" = uniform ]; then
  for t in q2g128 q3g128 q4g128 q5_0 q5_1 q6_k q8g128; do qu "$t"; done
fi
if [ "$PART" = all ] || [ "$PART" = pack ]; then
  : >"$OUT/pack.tsv"
  for f in "$OUT"/cb*.gguf "$OUT"/q4g128.gguf "$OUT"/q8g128.gguf; do
    [ -s "$f" ] || continue
    pk "$f" own; pk "$f" zstd 19
  done
fi
if [ "$PART" = all ] || [ "$PART" = pipeline ]; then
  P=$OUT/pruned-wanda-0.5.gguf
  [ -s "$P" ] || "$BIN" prune -m "$MODEL" -o "$P" --sparsity 0.5 --method wanda --type f16 --calib "$CALIB" -t "$THREADS" -q >"$OUT/prune.log" 2>&1
  for k in 16 32; do
    C=$OUT/pipe-cb$k.gguf
    [ -s "$C" ] || "$BIN" cluster -m "$P" -o "$C" --k "$k" --calib "$CALIB" -t "$THREADS" -q >"$OUT/pipe-cb$k.log" 2>&1
    pk "$C" own
    pk "$C" zstd 19
  done
fi
if [ "$PART" = all ] || [ "$PART" = eval ]; then
  ev=()
  for k in $KS; do for v in "" -w -w-o; do [ -s "$OUT/cb$k$v.gguf" ] && ev+=(-m "$OUT/cb$k$v.gguf"); done; done
  for t in q2g128 q3g128 q4g128 q5_0 q5_1 q6_k q8g128; do [ -s "$OUT/$t.gguf" ] && ev+=(-m "$OUT/$t.gguf"); done
  for k in 16 32; do [ -s "$OUT/pipe-cb$k.own3.slmp" ] && ev+=(-m "$OUT/pipe-cb$k.own3.slmp"); done
  "$BIN" eval "${ev[@]}" --base "$MODEL" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" --tg 128 -t "$THREADS" \
    --json "$OUT/eval.json" | tee "$OUT/eval.txt"
fi
