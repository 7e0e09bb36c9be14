#!/usr/bin/env bash
# `slimlm perplexity` on wikitext-2 (two small windows): a plausible value, JSON output, and
# KL against itself is zero with full top-1 agreement.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh
TEXT=../shared/data/wikitext2-test.txt
if [ ! -f "$TEXT" ]; then echo "FAIL: $TEXT not found (the evaluation text lives in ../shared/data)"; summary e2e_perplexity; exit 1; fi

"$BIN" perplexity -m "$MODEL" -f "$TEXT" --ctx 128 --chunks 2 --save-base "$TMP/base.klb" --json "$TMP/a.json" \
  >"$TMP/out" 2>"$TMP/err"
check "perplexity exits 0" test $? -eq 0
cat "$TMP/out"
ppl=$(python3 -c "import json;print(json.load(open('$TMP/a.json'))['ppl'])")
check "perplexity is plausible (5 < $ppl < 100)" python3 -c "import sys; sys.exit(not 5 < $ppl < 100)"
check "126 tokens scored (2 windows x 63)" python3 -c "import json,sys; sys.exit(json.load(open('$TMP/a.json'))['scored'] != 126)"
check "base file written" test -s "$TMP/base.klb"

"$BIN" perplexity -m "$MODEL" -f "$TEXT" --ctx 128 --chunks 2 --kl-base "$TMP/base.klb" --json "$TMP/b.json" >"$TMP/out2" 2>&1
check "kl run exits 0" test $? -eq 0
cat "$TMP/out2" | grep -v '^\['
check "KL of a model against itself is ~0" python3 -c "import json,sys; d=json.load(open('$TMP/b.json')); sys.exit(not (d['kl_mean'] < 1e-6 and d['top1_agree'] == 1.0 and abs(d['ppl_ratio']-1) < 1e-6))"

"$BIN" perplexity -m "$MODEL" -f "$TEXT" --ctx 64 --chunks 2 --kl-base "$TMP/base.klb" >/dev/null 2>"$TMP/err3"
check "a base from other settings is refused" test $? -ne 0
check "with a one-line reason" test "$(grep -c error "$TMP/err3")" -eq 1
head -c 100 "$TMP/base.klb" >"$TMP/trunc.klb"
"$BIN" perplexity -m "$MODEL" -f "$TEXT" --ctx 128 --chunks 2 --kl-base "$TMP/trunc.klb" >/dev/null 2>"$TMP/err4"
check "a truncated base file is refused" test $? -ne 0
check "no partial output file on failure" test ! -e "$TMP/none.json"
summary e2e_perplexity
