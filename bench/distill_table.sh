#!/usr/bin/env bash
# Distillation on the fixture: a depth-pruned student (the contiguous block of layers whose
# removal changes the residual stream least, by angular distance) and a width-pruned one
# (FFN channels by calibration importance), each evaluated before training, after knowledge
# distillation (KL to the teacher) and after plain cross-entropy training on the same tokens.
# One `slimlm eval` against the teacher at the end: size, perplexity on wikitext-2 *test*, KL,
# top-1. Training reads wikitext-2 *valid* only; its held-out tail gives the KL-vs-tokens curve
# (the eval lines of each run's log, OUTDIR/NAME.jsonl).
#
#   bench/distill_table.sh OUTDIR [TEACHER]
#     TOKENS=32768 SEQ=256 BATCH=2 LR=3e-4 THREADS=2 CHUNKS=10 DROP=14 FFN_KEEP=0.667
#     EVAL_EVERY=16 EVAL_TOKENS=2048 PART=depth|width|all EXTRA="more distill flags"
set -eu
BIN=${BIN:-build/slimlm}
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/distill_table.sh OUTDIR [TEACHER]}
TEACHER=${2:-$("$BIN" info 2>/dev/null | sed -n "s/^file: *//p" | head -1)}
TEXT=${TEXT:-../shared/data/wikitext2-test.txt}
VALID=${VALID:-../shared/data/wikitext2-valid.txt}
TOKENS=${TOKENS:-32768}
SEQ=${SEQ:-256}
BATCH=${BATCH:-2}
LR=${LR:-3e-4}
THREADS=${THREADS:-2}
CHUNKS=${CHUNKS:-10}
DROP=${DROP:-14}
FFN_KEEP=${FFN_KEEP:-0.667}
EVAL_EVERY=${EVAL_EVERY:-16}
EVAL_TOKENS=${EVAL_TOKENS:-2048}
PART=${PART:-all}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
args=()
train() { # NAME STUDENT-ARGS... : distill with --loss $LOSS into OUT/NAME.gguf unless it exists
  local name=$1; shift
  if [ ! -s "$OUT/$name.gguf" ]; then
    # shellcheck disable=SC2086
    /usr/bin/time -v "$BIN" distill --teacher "$TEACHER" -o "$OUT/$name.gguf" "$@" --data "$VALID" \
      --tokens "$TOKENS" --seq "$SEQ" --batch "$BATCH" --lr "$LR" --eval-every "$EVAL_EVERY" \
      --eval-tokens "$EVAL_TOKENS" --type f16 \
      -t "$THREADS" --log "$OUT/$name.jsonl" $EXTRA >"$OUT/$name.log" 2>&1
  fi
  args+=(-m "$OUT/$name.gguf")
}
if [ "$PART" = all ] || [ "$PART" = depth ]; then
  # the untrained student: the same layer choice, written without training
  # (the same data split as the training runs, so the same block is chosen)
  [ -s "$OUT/depth-init.gguf" ] || "$BIN" distill --teacher "$TEACHER" -o "$OUT/depth-init.gguf" --drop-block "$DROP" \
      --data "$VALID" --tokens 0 --eval-every "$EVAL_EVERY" --eval-tokens "$EVAL_TOKENS" --type f16 \
      -t "$THREADS" >"$OUT/depth-init.log" 2>&1
  args+=(-m "$OUT/depth-init.gguf")
  train depth-kd --drop-block "$DROP" --loss kl
  train depth-ce --drop-block "$DROP" --loss ce
fi
if [ "$PART" = all ] || [ "$PART" = width ]; then
  [ -s "$OUT/width-init.gguf" ] || "$BIN" prune -m "$TEACHER" -o "$OUT/width-init.gguf" --ffn-keep "$FFN_KEEP" \
      --text "$VALID" -t "$THREADS" >"$OUT/width-init.log" 2>&1
  args+=(-m "$OUT/width-init.gguf")
  train width-kd --student "$OUT/width-init.gguf" --loss kl
  train width-ce --student "$OUT/width-init.gguf" --loss ce
fi
"$BIN" eval "${args[@]}" --base "$TEACHER" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" -t "$THREADS" --json "$OUT/eval-$PART.json"
# the curve: held-out KL against tokens trained, per run
for f in "$OUT"/*.jsonl; do
  [ -s "$f" ] || continue
  echo "== $(basename "$f" .jsonl): tokens eval_kl eval_ce"
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "eval_kl" in r:
        print(r["tokens"], "%.4f" % r["eval_kl"], "%.4f" % r["eval_ce"])
' "$f"
done
