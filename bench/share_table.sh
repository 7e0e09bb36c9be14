#!/usr/bin/env bash
# Parameter sharing on the fixture: 30 -> 15 and 30 -> 10 unique layers (adjacent groups) at
# delta rank 0, 16 and 64, and cross-layer KV sharing in pairs, each stored like the fixture
# (layer matrices q4_1, embeddings q8_0; deltas f16); then healing by distillation of the
# 30 -> 10 rank-16 model and, at equal tokens, of a depth-pruned student of about the same
# size (12 layers, the contiguous block of least angular distance dropped), and of the KV-shared
# model. One `slimlm eval`
# against the original: size, bpw, perplexity (wikitext-2 test), KL, top-1, pp512 / tg128,
# peak memory. Training reads wikitext-2 valid only.
#
# HEAL=all heals every sharing configuration and two depth-pruned students (12 and 18 layers,
# the sizes of the 30 -> 10 and 30 -> 15 models) at the same budget, and two shared models
# that start as those students: the layers the depth student keeps store their own matrices,
# every dropped layer uses the last kept layer's matrices and starts as identity (zero norm
# weights; `share --keep-layers LIST --identity`).
#
#   bench/share_table.sh OUTDIR [MODEL]   (TOKENS=32768 SEQ=256 BATCH=2 LR=3e-4 THREADS=2 CHUNKS=10
#                                          EVAL_EVERY=16 EVAL_TOKENS=2048 HEAL=0|1|all)
set -eu
BIN=${BIN:-build/slimlm}
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/share_table.sh OUTDIR [MODEL]}
MODEL=${2:-$("$BIN" info 2>/dev/null | sed -n "s/^file: *//p" | head -1)}
TEXT=${TEXT:-../shared/data/wikitext2-test.txt}
VALID=${VALID:-../shared/data/wikitext2-valid.txt}
TOKENS=${TOKENS:-32768}
SEQ=${SEQ:-256}
BATCH=${BATCH:-2}
LR=${LR:-3e-4}
THREADS=${THREADS:-2}
CHUNKS=${CHUNKS:-10}
EVAL_EVERY=${EVAL_EVERY:-16}
EVAL_TOKENS=${EVAL_TOKENS:-2048}
HEAL=${HEAL:-1}
mkdir -p "$OUT"
args=()
share() { # NAME SHARE-ARGS...: OUT/NAME.gguf (f16 matrices) and OUT/NAME-q4_1.gguf
  local name=$1; shift
  [ -s "$OUT/$name.gguf" ] || "$BIN" share -m "$MODEL" -o "$OUT/$name.gguf" "$@" >"$OUT/$name.log" 2>&1
  [ -s "$OUT/$name-q4_1.gguf" ] || "$BIN" quantize -m "$OUT/$name.gguf" -o "$OUT/$name-q4_1.gguf" --type q4_1 --keep embd -q >/dev/null
  args+=(-m "$OUT/$name-q4_1.gguf")
}
for g in 15 10; do
  for r in 0 16 64; do share "g$g-r$r" --groups "$g" --rank "$r"; done
done
share kv2 --kv-share 2
heal() { # NAME STUDENT-ARGS...: distill at the common budget, then q4_1 like the others
  local name=$1; shift
  [ -s "$OUT/$name.gguf" ] || "$BIN" distill --teacher "$MODEL" -o "$OUT/$name.gguf" "$@" --data "$VALID" \
      --tokens "$TOKENS" --seq "$SEQ" --batch "$BATCH" --lr "$LR" --eval-every "$EVAL_EVERY" \
      --eval-tokens "$EVAL_TOKENS" --type f16 -t "$THREADS" --log "$OUT/$name.jsonl" >"$OUT/$name.log" 2>&1
  [ -s "$OUT/$name-q4_1.gguf" ] || "$BIN" quantize -m "$OUT/$name.gguf" -o "$OUT/$name-q4_1.gguf" --type q4_1 --keep embd -q >/dev/null
  args+=(-m "$OUT/$name-q4_1.gguf")
}
if [ "$HEAL" = 1 ] || [ "$HEAL" = all ]; then
  heal g10-r16-healed --student "$OUT/g10-r16.gguf"
  heal depth12-healed --drop-block 18
  heal kv2-healed --student "$OUT/kv2.gguf"
fi
if [ "$HEAL" = all ]; then
  for g in 15 10; do
    for r in 0 16 64; do [ "$g-$r" = 10-16 ] || heal "g$g-r$r-healed" --student "$OUT/g$g-r$r.gguf"; done
  done
  heal depth18-healed --drop-block 12
  for drop in 18 12; do
    # the block the depth student drops, from distill's own choice
    blk=$("$BIN" distill --teacher "$MODEL" --drop-block "$drop" --tokens 0 -o "$OUT/.blk.gguf" -t "$THREADS" 2>&1 |
      sed -n 's/.*dropping layers \([0-9]*\)-\([0-9]*\).*/\1 \2/p' | head -1)
    rm -f "$OUT/.blk.gguf"
    set -- $blk
    nl=$("$BIN" info "$MODEL" | sed -n 's/.*block_count (uint32) = \([0-9]*\).*/\1/p' | head -1)
    keep=$(python3 -c 'import sys; a, b, n = map(int, sys.argv[1:]); print(",".join(str(l) for l in range(n) if l < a or l > b))' "$1" "$2" "$nl")
    name=keep$((nl - drop))-identity
    [ -s "$OUT/$name.gguf" ] || "$BIN" share -m "$MODEL" -o "$OUT/$name.gguf" --keep-layers "$keep" --identity >"$OUT/$name.log" 2>&1
    [ -s "$OUT/$name-q4_1.gguf" ] || "$BIN" quantize -m "$OUT/$name.gguf" -o "$OUT/$name-q4_1.gguf" --type q4_1 --keep embd -q >/dev/null
    args+=(-m "$OUT/$name-q4_1.gguf")
    heal "$name-healed" --student "$OUT/$name.gguf"
  done
fi
"$BIN" eval "${args[@]}" --base "$MODEL" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" --pp 512 --tg 128 -t "$THREADS" \
  --json "$OUT/eval.json"
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
