#!/usr/bin/env bash
# `slimlm awq` on the fixture with a small calibration: folding the scales without quantizing
# leaves the logits unchanged (exact reference path), the quantized model loads and runs, a
# saved calibration reproduces the same file, AWQ beats plain rounding on KL at the same size,
# and bad input is refused cleanly.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh
VALID=../shared/data/wikitext2-valid.txt
TEXT=../shared/data/wikitext2-test.txt
if [ ! -f "$VALID" ] || [ ! -f "$TEXT" ]; then echo "FAIL: ../shared/data texts not found"; summary e2e_awq; exit 1; fi
SMALL=(--samples 8 --seq 128 --keep-rows 128 --grid 10 -t 2)

# 1. calibrate + search + quantize, saving the calibration
"$BIN" awq -m "$MODEL" -o "$TMP/awq.gguf" "${SMALL[@]}" --text "$VALID" --save-calib "$TMP/cal.bin" >"$TMP/out" 2>"$TMP/err"
check "awq exits 0" test $? -eq 0
check "output written" test -s "$TMP/awq.gguf"
check "calibration saved" test -s "$TMP/cal.bin"
check "a report row per layer (30) and a total row" test "$(grep -cE '^[0-9]+ ' "$TMP/out")" -eq 30 -a "$(grep -c '^all ' "$TMP/out")" -eq 1
# the chosen alpha never does worse than plain rounding (alpha 0 is on the grid)
check "error ratios <= 1" python3 -c "
import sys
for l in open('$TMP/out'):
    f = l.split()
    if f and (f[0].isdigit() or f[0] == 'all'):
        r = [float(x) for x in f[1:]][1::2] if f[0] != 'all' else [float(x) for x in f[1:]]
        if any(x > 1.0 + 1e-9 for x in r): sys.exit(1)
"
check "calibration time and peak memory reported" grep -q 'peak memory' "$TMP/out"
"$BIN" info -m "$TMP/awq.gguf" >"$TMP/meta" 2>&1
check "metadata: method awq, type q4g128a" grep -q 'slimlm.quantize.method (string) = "awq"' "$TMP/meta"
check "metadata: calibration recorded" grep -q 'slimlm.awq.calib_tokens (uint64) = 1024' "$TMP/meta"
check "embedding kept at its input type" grep -qE '^0 +token_embd.weight +q8_0 ' "$TMP/meta"
check "all 210 layer matrices are q4g128a" test "$(grep -cE '^[0-9]+ +blk\.[0-9]+\.(attn|ffn)_[a-z]+\.weight +q4g128a ' "$TMP/meta")" -eq 210
"$BIN" run -m "$TMP/awq.gguf" -p "The capital of France is" -n 8 --temp 0 >"$TMP/gen" 2>/dev/null
check "the AWQ model generates" test $? -eq 0 -a -s "$TMP/gen"

# 2. the saved calibration gives the same file
"$BIN" awq -m "$MODEL" -o "$TMP/awq2.gguf" "${SMALL[@]}" --calib "$TMP/cal.bin" -q >/dev/null 2>&1
check "awq from a saved calibration exits 0" test $? -eq 0
check "same calibration, same file" cmp -s "$TMP/awq.gguf" "$TMP/awq2.gguf"

# 3. folding alone is exact: same logits as the original on the reference path
"$BIN" awq -m "$MODEL" -o "$TMP/fold.gguf" "${SMALL[@]}" --calib "$TMP/cal.bin" --fold-only -q >/dev/null 2>&1
check "fold-only exits 0" test $? -eq 0
IDS=1,504,3458,282,4649,314,260,3575,2296,28,198,504,1083,4193,12295,30,17,29
"$BIN" logits -m "$MODEL" --ids $IDS --out "$TMP/a.f32" --isa ref --kv-type f32 2>/dev/null
"$BIN" logits -m "$TMP/fold.gguf" --ids $IDS --out "$TMP/b.f32" --isa ref --kv-type f32 2>/dev/null
check "folded model: logits equal the original's (max diff < 1e-4 of the range)" python3 -c "
import numpy as np, sys
a = np.fromfile('$TMP/a.f32', np.float32); b = np.fromfile('$TMP/b.f32', np.float32)
d = np.abs(a - b).max(); r = a.max() - a.min()
print('fold: max |diff| %.3g, range %.3g' % (d, r))
sys.exit(not (a.size == b.size and a.size > 0 and d < 1e-4 * r))"
check "the folded norms really changed" python3 -c "
import numpy as np, sys
from gguf import GGUFReader
def t(p, n): return [np.array(x.data, np.float32) for x in GGUFReader(p).tensors if x.name == n][0]
a = t('$MODEL', 'blk.3.attn_norm.weight'); b = t('$TMP/fold.gguf', 'blk.3.attn_norm.weight')
sys.exit(not np.abs(a / b - 1).max() > 0.05)"

# 4. better than plain rounding at the same size (KL against the original)
"$BIN" quantize -m "$MODEL" -o "$TMP/rtn.gguf" --type q4g128a --keep embd --keep output -q >/dev/null
"$BIN" eval -m "$TMP/rtn.gguf" -m "$TMP/awq.gguf" --base "$MODEL" -f "$TEXT" --ctx 128 --chunks 4 --no-cache \
  --json "$TMP/ev.json" >"$TMP/ev" 2>/dev/null
check "eval exits 0" test $? -eq 0
cat "$TMP/ev"
check "AWQ has lower KL than round to nearest, same tensor bytes" python3 -c "
import json, sys
rows = {r['path'].split('/')[-1]: r for r in json.load(open('$TMP/ev.json'))['models']}
a, r = rows['awq.gguf'], rows['rtn.gguf']
sys.exit(not (a['kl_mean'] < r['kl_mean'] and a['n_bytes'] == r['n_bytes']))"

# 5. bad input
expect_error "bits 5" "$BIN" awq -m "$MODEL" -o "$TMP/x.gguf" --bits 5
expect_error "group 48" "$BIN" awq -m "$MODEL" -o "$TMP/x.gguf" --group 48
expect_error "no output" "$BIN" awq -m "$MODEL"
expect_error "missing model file" "$BIN" awq -m "$TMP/none.gguf" -o "$TMP/x.gguf"
expect_error "output is the input" "$BIN" awq -m "$MODEL" -o "$MODEL"
expect_error "unreadable text" "$BIN" awq -m "$MODEL" -o "$TMP/x.gguf" --text "$TMP/none.txt"
expect_error "float type" "$BIN" awq -m "$MODEL" -o "$TMP/x.gguf" --type f16
expect_error "clip search with q5_0" "$BIN" awq -m "$MODEL" -o "$TMP/x.gguf" --type q5_0 --clip-search
expect_error "unknown flag" "$BIN" awq -m "$MODEL" -o "$TMP/x.gguf" --frobnicate
head -c 5000 "$TMP/cal.bin" >"$TMP/trunc.bin"
expect_error "truncated calibration file" "$BIN" awq -m "$MODEL" -o "$TMP/x.gguf" --calib "$TMP/trunc.bin" -q
check "no output file after the failures" test ! -e "$TMP/x.gguf"
check "no temporary files left" test -z "$(ls "$TMP" | grep -v -E '^(awq|awq2|fold|rtn)\.gguf$|^(cal|trunc)\.bin$|^[ab]\.f32$|^(out|err|meta|gen|ev|ev\.json|o|e)$')"
summary e2e_awq
