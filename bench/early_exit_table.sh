#!/usr/bin/env bash
# Early exit (CALM-style, cosine saturation of the residual stream) on the fixture: KL against
# the full model and perplexity on wikitext-2 test against the average number of layers per
# token, for a sweep of thresholds. Early exit applies to single-token passes, so perplexity
# scores token by token here.
#
#   bench/early_exit_table.sh OUTDIR [MODEL]   (CHUNKS=4 CTX=512 THREADS=2 EXIT_MIN=0
#                                               THRESHOLDS="0.999 0.998 0.995 0.99 0.98")
set -eu
BIN=${BIN:-build/slimlm}
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/early_exit_table.sh OUTDIR [MODEL]}
MODEL=${2:-$("$BIN" info 2>/dev/null | sed -n "s/^file: *//p" | head -1)}
TEXT=${TEXT:-../shared/data/wikitext2-test.txt}
CHUNKS=${CHUNKS:-4}
CTX=${CTX:-512}
THREADS=${THREADS:-2}
EXIT_MIN=${EXIT_MIN:-0}
THRESHOLDS=${THRESHOLDS:-"0.999 0.998 0.995 0.99 0.98"}
mkdir -p "$OUT"
[ -s "$OUT/base.klb" ] || "$BIN" perplexity -m "$MODEL" -f "$TEXT" --ctx "$CTX" --chunks "$CHUNKS" -t "$THREADS" \
  --save-base "$OUT/base.klb" >"$OUT/base.log" 2>&1
min=()
[ "$EXIT_MIN" != 0 ] && min=(--exit-min "$EXIT_MIN")
printf "%-10s %12s %10s %10s %8s\n" threshold layers/token ppl "KL mean" top-1
for c in $THRESHOLDS; do
  "$BIN" perplexity -m "$MODEL" -f "$TEXT" --ctx "$CTX" --chunks "$CHUNKS" -t "$THREADS" --early-exit "$c" "${min[@]}" \
    --kl-base "$OUT/base.klb" --json "$OUT/exit-$c.json" >"$OUT/exit-$c.log" 2>&1
  python3 - "$c" "$OUT/exit-$c.log" "$OUT/exit-$c.json" <<'PY'
import json, re, sys
log = open(sys.argv[2]).read()
lay = re.search(r"early exit: ([0-9.]+) layers per token", log)
j = json.load(open(sys.argv[3]))
g = lambda *k: next((j[x] for x in k if x in j), float("nan"))
print("%-10s %12s %10.3f %10.4f %8.4f" % (sys.argv[1], lay.group(1) if lay else "-", g("ppl"), g("kl_mean", "kl"), g("top1", "top1_agree")))
PY
done
