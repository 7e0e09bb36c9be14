#!/usr/bin/env bash
# The size / quality / speed frontier of the fixture: models made by every method and some
# combinations (recipes through `slimlm compress`), one `slimlm eval` against the original
# (wikitext-2 test, pp512 / tg128, peak memory), then `slimlm report` (HTML + PNG figures) and,
# when Chromium is installed, a screenshot of the page. Earlier benchmark outputs (distilled,
# shared models) are added when present.
#
#   bench/report_fixture.sh OUTDIR [MODEL]   (THREADS=2 CHUNKS=10 DISTILL_DIR=/tmp/dt SHARE_DIR=/tmp/st)
set -eu
BIN=${BIN:-build/slimlm}
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:?usage: bench/report_fixture.sh OUTDIR [MODEL]}
MODEL=${2:-$("$BIN" info 2>/dev/null | sed -n "s/^file: *//p" | head -1)}
TEXT=${TEXT:-../shared/data/wikitext2-test.txt}
VALID=${VALID:-../shared/data/wikitext2-valid.txt}
THREADS=${THREADS:-2}
CHUNKS=${CHUNKS:-10}
DISTILL_DIR=${DISTILL_DIR:-/tmp/dt}
SHARE_DIR=${SHARE_DIR:-/tmp/st}
mkdir -p "$OUT"
args=()
q() { # NAME ARGS...: slimlm quantize
  local name=$1; shift
  [ -s "$OUT/$name.gguf" ] || "$BIN" quantize -m "$MODEL" -o "$OUT/$name.gguf" "$@" -t "$THREADS" -q >/dev/null
  args+=(-m "$OUT/$name.gguf")
}
recipe() { # NAME EXT LINES...: slimlm compress with a recipe of these lines
  local name=$1 ext=$2; shift 2
  printf '%s\n' "$@" >"$OUT/$name.recipe"
  [ -s "$OUT/$name.$ext" ] || "$BIN" compress -m "$MODEL" -o "$OUT/$name.$ext" --recipe "$OUT/$name.recipe" \
      --work "$OUT/$name.work" -t "$THREADS" -q >"$OUT/$name.log" 2>&1
  args+=(-m "$OUT/$name.$ext")
}
q q8_0 --type q8_0
q q4_0 --type q4_0 --keep embd
q q3_K --type q3_K --keep embd
q q2_K --type q2_K --keep embd
q q4g128 --type q4g128 --clip-search --keep embd
recipe awq-4g128 gguf "awq --bits 4 --group 128"
recipe awq-3g64 gguf "awq --bits 3 --group 64"
recipe wanda50 gguf "prune --method wanda --sparsity 0.5"
recipe cb16w gguf "cluster --k 16 --weighted"
recipe cb8w gguf "cluster --k 8 --weighted"
recipe wanda30-awq4-pack slm "prune --method wanda --sparsity 0.3" "awq --bits 4 --group 128" "pack --codec auto"
recipe cb16-pack slm "cluster --k 16 --weighted" "pack --codec auto"
# near 3 and 4.5 bits per weight: every tensor quantized, the embedding too
q q3_K-all --type q3_K
q q2_K-all --type q2_K
recipe awq-3g128-e4 gguf "awq --bits 3 --group 128" "quantize --type q4_0 --keep 'blk.*'"
recipe cb8w-e4 gguf "cluster --k 8 --weighted" "quantize --type q4_0 --keep 'blk.*'"
recipe awq-4g128-e4 gguf "awq --bits 4 --group 128" "quantize --type q4_0 --keep 'blk.*'"
recipe cb16w-e4 gguf "cluster --k 16 --weighted" "quantize --type q4_0 --keep 'blk.*'"
# distilled and shared models of the other benchmarks, stored like the fixture (q4_1 layers)
for f in "$DISTILL_DIR"/depth-kd.gguf "$DISTILL_DIR"/width-kd.gguf "$SHARE_DIR"/g10-r16-healed-q4_1.gguf \
         "$SHARE_DIR"/kv2-healed-q4_1.gguf; do
  [ -s "$f" ] || continue
  name=$(basename "$f" .gguf)
  case $name in
    *-q4_1) cp -f "$f" "$OUT/$name.gguf" ;;  # (distilled files keep an f16 embedding)
    *) [ -s "$OUT/$name-q4_1.gguf" ] || "$BIN" quantize -m "$f" -o "$OUT/$name-q4_1.gguf" --type q4_1 --keep embd -q >/dev/null
       name=$name-q4_1 ;;
  esac
  args+=(-m "$OUT/$name.gguf")
done
"$BIN" eval "${args[@]}" --base "$MODEL" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" --pp 512 --tg 128 -t "$THREADS" \
  --json "$OUT/eval.json" --csv "$OUT/eval.csv"
layers=()
[ -s "$OUT/awq-4g128.gguf.layers.tsv" ] && layers=(--layers "$OUT/awq-4g128.gguf.layers.tsv")
"$BIN" report "$OUT/eval.json" -o "$OUT/report" "${layers[@]}"
if command -v chromium >/dev/null 2>&1; then
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,2400 \
    --screenshot="$OUT/report/screenshot.png" "file://$(cd "$OUT/report" && pwd)/index.html" >/dev/null 2>&1 || true
fi
ls -la "$OUT/report"
