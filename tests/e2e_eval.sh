#!/usr/bin/env bash
# slimlm eval: the fixture against itself (KL 0, full top-1 agreement), a q4_0 re-quantization
# against the fixture (KL > 0, top-1 < 1, matrix bits per weight and sizes as the gguf Python
# package computes them from the file, perplexity equal to `slimlm perplexity`), the base file
# cache (made once, reused, a corrupted entry recomputed, --no-cache), and errors (one error
# line, non-zero exit, no --json file).
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh
TEXT=../shared/data/wikitext2-test.txt
if [ ! -f "$TEXT" ]; then echo "FAIL: $TEXT not found (the evaluation text lives in ../shared/data)"; summary e2e_eval; exit 1; fi
export SLIMLM_CACHE=$TMP/cache
S=(--ctx 128 --chunks 2 -t 2)
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

"$BIN" eval --help >"$TMP/h" 2>&1
check "eval --help exits 0" test $? -eq 0
check "eval --help prints usage" grep -q "usage: slimlm eval" "$TMP/h"

# 1. The fixture against itself.
"$BIN" eval -m "$MODEL" --base "$MODEL" -f "$TEXT" "${S[@]}" --json "$TMP/self.json" >"$TMP/self.out" 2>"$TMP/self.err"
check "self eval exits 0 ($(tail -n 1 "$TMP/self.err"))" test $? -eq 0
cat "$TMP/self.out"
check "self: two rows (base + model)" test "$(jget "$TMP/self.json" "len(d['models'])")" = 2
check "self: base row has no measured KL" test "$(jget "$TMP/self.json" "d['models'][0]['is_base'] and d['models'][0]['kl_mean'] is None")" = True
check "self: KL ~ 0 and top-1 == 1" test "$(jget "$TMP/self.json" "d['models'][1]['kl_mean'] < 1e-6 and d['models'][1]['top1_agree'] == 1.0 and abs(d['models'][1]['ppl_ratio'] - 1) < 1e-6")" = True
check "self: base row printed with '-' for KL" grep -qE "\(base\) .* - +- +- +-$" "$TMP/self.out"
check "self: base file computed" grep -q "computing base file" "$TMP/self.err"
check "cache file exists after the first run" test "$(ls "$SLIMLM_CACHE"/klbase/*.klb 2>/dev/null | wc -l)" -eq 1
KLB=$(ls "$SLIMLM_CACHE"/klbase/*.klb)
check "cache file is the one the JSON names" test "$(jget "$TMP/self.json" "d['base_file']")" = "$KLB"
# The key is the SHA-256 of the model digest, the text digest and the settings.
key=$(printf 'slimlm klbase v1\nmodel %s\ntext %s\nctx 128\nchunks 2\ntop_k 32\nkv f16\n' \
  "$(sha256sum "$MODEL" | cut -c1-64)" "$(sha256sum "$TEXT" | cut -c1-64)" | sha256sum | cut -c1-64)
check "cache file named by the key" test "$(basename "$KLB")" = "$key.klb"

# 2. A q4_0 re-quantization against the fixture.
"$BIN" quantize -m "$MODEL" -o "$TMP/q4.gguf" --type q4_0 -q -t 2 >/dev/null 2>&1
check "quantize q4_0 exits 0" test $? -eq 0
"$BIN" eval -m "$TMP/q4.gguf" --base "$MODEL" -f "$TEXT" "${S[@]}" --tg 8 --json "$TMP/q4.json" >"$TMP/q4.out" 2>"$TMP/q4.err"
check "q4 eval exits 0 ($(tail -n 1 "$TMP/q4.err"))" test $? -eq 0
cat "$TMP/q4.out"
check "second run reuses the cached base file" grep -q "reusing cached base file $KLB" "$TMP/q4.err"
check "second run does not recompute it" test "$(grep -c "computing base file" "$TMP/q4.err")" -eq 0
check "q4: KL > 0 and top-1 < 1" test "$(jget "$TMP/q4.json" "d['models'][1]['kl_mean'] > 0 and d['models'][1]['kl_p99'] > 0 and d['models'][1]['top1_agree'] < 1")" = True
check "q4: tg column and a speed" test "$(jget "$TMP/q4.json" "d['models'][1]['tg_tokens_per_s'] > 0")" = True
check "q4: table has the tg8 column" grep -q "tg8 t/s" "$TMP/q4.out"
python3 - "$TMP/q4.json" "$MODEL" "$TMP/q4.gguf" >"$TMP/bpw" 2>&1 <<'PY'
import json, os, sys
from gguf import GGUFReader
rows = json.load(open(sys.argv[1]))["models"]
bad = 0
for row, path in zip(rows, sys.argv[2:]):
    r = GGUFReader(path)
    n = sum(int(t.n_elements) for t in r.tensors)
    b = sum(int(t.n_bytes) for t in r.tensors)
    mats = [t for t in r.tensors if len(t.shape) == 2]
    mn = sum(int(t.n_elements) for t in mats)
    mb = sum(int(t.n_bytes) for t in mats)
    want = {"file_bytes": os.path.getsize(path), "n_params": n, "n_bytes": b, "matrix_params": mn, "matrix_bytes": mb}
    for k, v in want.items():
        if row[k] != v:
            print(f"{path}: {k} {row[k]} != {v}"); bad += 1
    for k, v in (("bpw", 8 * b / n), ("matrix_bpw", 8 * mb / mn)):
        if abs(row[k] - v) > 1e-5:
            print(f"{path}: {k} {row[k]} != {v}"); bad += 1
    if path.endswith("q4.gguf"):
        if not all(t.tensor_type.name == "Q4_0" for t in mats) or abs(8 * mb / mn - 4.5) > 1e-12 or abs(row["matrix_bpw"] - 4.5) > 1e-6:
            print(f"q4_0 matrices: {8 * mb / mn} bits per weight, row says {row['matrix_bpw']}"); bad += 1
print(f"{bad} mismatches")
sys.exit(1 if bad else 0)
PY
check "sizes and bits per weight match the gguf package, q4_0 matrices 4.5 bpw ($(tail -n 1 "$TMP/bpw"))" test $? -eq 0
"$BIN" perplexity -m "$TMP/q4.gguf" -f "$TEXT" "${S[@]}" --json "$TMP/ppl.json" >/dev/null 2>&1
check "perplexity of q4 exits 0" test $? -eq 0
check "q4: eval ppl equals slimlm perplexity's" test "$(python3 -c "import json; a=json.load(open('$TMP/ppl.json'))['ppl']; b=json.load(open('$TMP/q4.json'))['models'][1]['ppl']; print(abs(a-b) <= 1e-6*a)")" = True
check "base row ppl equals the fixture's own" test "$(python3 -c "import json; a=json.load(open('$TMP/self.json'))['models'][1]['ppl']; b=json.load(open('$TMP/q4.json'))['models'][0]['ppl']; print(abs(a-b) <= 1e-5*a)")" = True

# 3. A corrupted cache entry (bytes changed inside the records: the file's own checks cannot
# see it) is detected, deleted and recomputed, and the results do not change.
printf '\x11\x22\x33\x44\x55\x66\x77\x08' | dd of="$KLB" bs=1 seek=1000 conv=notrunc 2>/dev/null
"$BIN" eval -m "$TMP/q4.gguf" --base "$MODEL" -f "$TEXT" "${S[@]}" --json "$TMP/q4b.json" >/dev/null 2>"$TMP/c.err"
check "eval over a corrupted cache exits 0 ($(tail -n 1 "$TMP/c.err"))" test $? -eq 0
check "corruption reported" grep -q "is corrupt" "$TMP/c.err"
check "base file recomputed" grep -q "computing base file" "$TMP/c.err"
check "recomputed file is the original again" test "$(sha256sum <"$KLB" | cut -c1-64)" = "$(cut -c1-64 "${KLB%.klb}.sha256")"
check "same KL after recomputation" test "$(python3 -c "import json; a=json.load(open('$TMP/q4.json'))['models'][1]; b=json.load(open('$TMP/q4b.json'))['models'][1]; print(a['kl_mean']==b['kl_mean'] and a['top1_agree']==b['top1_agree'])")" = True
head -c 100 "$KLB" >"$TMP/t" && cp "$TMP/t" "$KLB"
"$BIN" eval -m "$TMP/q4.gguf" --base "$MODEL" -f "$TEXT" "${S[@]}" >/dev/null 2>"$TMP/c2.err"
check "truncated cache entry recomputed" test $? -eq 0 -a "$(grep -c "is corrupt" "$TMP/c2.err")" -eq 1
# --no-cache: nothing written to the cache, the same numbers.
SLIMLM_CACHE=$TMP/cache2 "$BIN" eval -m "$TMP/q4.gguf" --base "$MODEL" -f "$TEXT" "${S[@]}" --no-cache \
  --json "$TMP/nc.json" >/dev/null 2>"$TMP/nc.err"
check "--no-cache exits 0" test $? -eq 0
check "--no-cache leaves no cache" test ! -e "$TMP/cache2"
check "--no-cache: same KL" test "$(python3 -c "import json; a=json.load(open('$TMP/q4.json'))['models'][1]; b=json.load(open('$TMP/nc.json'))['models'][1]; print(a['kl_mean']==b['kl_mean'])")" = True

# 4. Errors: non-zero exit, one error line, no --json file.
J=$TMP/err.json
expect_error_no_json() {
  local d=$1
  expect_error "$@"
  if [ -e "$J" ]; then bad "$d: wrote $J"; rm -f "$J"; else ok; fi
}
# Failures found after progress lines have started: exactly one line with "error".
fail_no_json() {
  local d=$1; shift
  "$@" >"$TMP/o" 2>"$TMP/e" </dev/null
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(grep -c error "$TMP/e")" -eq 1 ] && tail -n 1 "$TMP/e" | grep -q error; then ok
  else bad "$d (exit $rc): $(tail -c 300 "$TMP/e")"; fi
  if [ -e "$J" ]; then bad "$d: wrote $J"; rm -f "$J"; else ok; fi
}
expect_error_no_json "missing model" "$BIN" eval -m "$TMP/nope.gguf" -f "$TEXT" "${S[@]}" --json "$J"
expect_error_no_json "missing base" "$BIN" eval -m "$MODEL" --base "$TMP/nope.gguf" -f "$TEXT" "${S[@]}" --json "$J"
expect_error_no_json "directory as model" "$BIN" eval -m "$TMP" -f "$TEXT" "${S[@]}" --json "$J"
expect_error_no_json "missing text" "$BIN" eval -m "$MODEL" -f "$TMP/nope.txt" "${S[@]}" --json "$J"
expect_error_no_json "no -f" "$BIN" eval -m "$MODEL" "${S[@]}" --json "$J"
expect_error_no_json "unknown flag" "$BIN" eval -m "$MODEL" -f "$TEXT" --bogus --json "$J"
expect_error_no_json "bad --ctx" "$BIN" eval -m "$MODEL" -f "$TEXT" --ctx 2 --json "$J"
expect_error_no_json "bad --tg" "$BIN" eval -m "$MODEL" -f "$TEXT" --tg x --json "$J"
expect_error_no_json "bad --kv-type" "$BIN" eval -m "$MODEL" -f "$TEXT" --kv-type q8 --json "$J"
expect_error_no_json "--chunks without value" "$BIN" eval -m "$MODEL" -f "$TEXT" --json "$J" --chunks
printf 'not a model\n' >"$TMP/text.gguf"
fail_no_json "invalid model file" "$BIN" eval -m "$MODEL" -m "$TMP/text.gguf" -f "$TEXT" "${S[@]}" --json "$J"
printf 'A short text.\n' >"$TMP/short.txt"
fail_no_json "text shorter than one window" "$BIN" eval -m "$MODEL" -f "$TMP/short.txt" "${S[@]}" --json "$J"
fail_no_json "text shorter than one window (with base)" "$BIN" eval -m "$MODEL" --base "$MODEL" -f "$TMP/short.txt" "${S[@]}" --json "$J"
check "short text leaves no cache entry" test "$(ls "$SLIMLM_CACHE"/klbase/ | wc -l)" -eq 2
fail_no_json "unwritable --json directory" "$BIN" eval -m "$MODEL" -f "$TEXT" "${S[@]}" --json "$TMP/no/dir/x.json"
summary e2e_eval
