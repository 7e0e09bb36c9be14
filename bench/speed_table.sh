#!/usr/bin/env bash
# Prompt and generation speed (pp512 and tg128 medians, `slimlm bench`) of every model file in
# a directory, one after the other in the same sitting, so the numbers compare. Run it on a
# quiet machine: a speed table measured while other jobs run says little.
#
#   bench/speed_table.sh DIR [MODEL...]      (THREADS=2 REPS=3 PP=512 TG=128)
#
# Prints a markdown table (file, pp, tg tokens/s) and writes DIR/speed.json.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-build/slimlm}
DIR=${1:?usage: bench/speed_table.sh DIR [MODEL...]}
shift
THREADS=${THREADS:-2}
REPS=${REPS:-3}
PP=${PP:-512}
TG=${TG:-128}
files=("$@")
[ ${#files[@]} -gt 0 ] || files=("$DIR"/*.gguf)
echo "| model | pp$PP t/s | tg$TG t/s |"
echo "|---|---|---|"
json="["
for f in "${files[@]}"; do
  "$BIN" bench -m "$f" -p "$PP" -n "$TG" -t "$THREADS" -r "$REPS" --no-membw --json "$DIR/.one.json" >/dev/null 2>&1
  read -r pp tg < <(python3 -c "
import json,sys
d=json.load(open('$DIR/.one.json'))
v={r['kind']: r['tps_median'] for r in d['results']}
print('%.1f %.1f' % (v.get('pp',0), v.get('tg',0)))")
  echo "| $(basename "$f" .gguf) | $pp | $tg |"
  json="$json{\"model\": \"$(basename "$f")\", \"pp\": $pp, \"tg\": $tg},"
done
rm -f "$DIR/.one.json"
echo "${json%,}]" >"$DIR/speed.json"
