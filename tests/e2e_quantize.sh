#!/usr/bin/env bash
# slimlm quantize: q8_0 and q4_0 outputs load and generate, info shows the new dtypes and the
# slimlm.* keys, re-quantizing the Q4_1 fixture to q4_1 reproduces its matrices byte for byte
# (checked with the gguf Python package), and every error leaves no output file behind.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

"$BIN" quantize --help >"$TMP/h" 2>&1
check "quantize --help exits 0" test $? -eq 0
check "quantize --help prints usage" grep -q "usage: slimlm quantize" "$TMP/h"

for t in q8_0 q4_0; do
  "$BIN" quantize -m "$MODEL" -o "$TMP/$t.gguf" --type $t -t 2 >"$TMP/$t.txt" 2>"$TMP/$t.err"
  check "quantize to $t exits 0" test $? -eq 0
  check "$t: summary has totals" grep -qE "^total: 272 tensors .* bits per weight" "$TMP/$t.txt"
  check "$t: summary lists a matrix with its error" grep -qE "^blk\.0\.attn_q\.weight +q4_1 -> $t +[0-9]+ +[0-9]+ +0\.[0-9]+" "$TMP/$t.txt"
  "$BIN" info "$TMP/$t.gguf" >"$TMP/$t.info" 2>&1
  check "$t: info exits 0" test $? -eq 0
  check "$t: 211 matrices are $t" test "$(grep -cE "^[0-9]+ +(blk|token_embd)\S+ +$t " "$TMP/$t.info")" -eq 211
  check "$t: norms stay f32" test "$(grep -cE '^[0-9]+ +\S+norm\.weight +f32 ' "$TMP/$t.info")" -eq 61
  for k in slimlm.quantize.type slimlm.quantize.keep slimlm.source.sha256 slimlm.version; do
    check "$t: info shows $k" grep -q "$k" "$TMP/$t.info"
  done
  check "$t: quantize type recorded" grep -q "slimlm.quantize.type (string) = \"$t\"" "$TMP/$t.info"
  check "$t: source sha256 recorded" grep -q "slimlm.source.sha256 (string) = \"$(sha256sum "$MODEL" | cut -c1-64)\"" "$TMP/$t.info"
  check "$t: chat template kept" grep -q "tokenizer.chat_template" "$TMP/$t.info"
  "$BIN" run -m "$TMP/$t.gguf" -p "The capital of France is" -n 8 --temp 0 >"$TMP/$t.gen" 2>"$TMP/$t.generr"
  check "$t: run exits 0 ($(head -c 200 "$TMP/$t.generr"))" test $? -eq 0
  check "$t: run generates text" test "$(wc -c <"$TMP/$t.gen")" -gt 26
done
check "q8_0: general.file_type 7" grep -qE "general.file_type \(uint32\) = 7$" "$TMP/q8_0.info"
check "q4_0: general.file_type 2" grep -qE "general.file_type \(uint32\) = 2$" "$TMP/q4_0.info"

# Determinism: the same command gives the same bytes, whatever the thread count.
"$BIN" quantize -m "$MODEL" -o "$TMP/q4_0b.gguf" --type q4_0 -t 1 -q >/dev/null 2>&1
check "q4_0 twice (1 vs 2 threads): byte-identical" cmp -s "$TMP/q4_0.gguf" "$TMP/q4_0b.gguf"
rm -f "$TMP/q4_0b.gguf" "$TMP/q4_0.gguf"

# The fixture's Q4_1 matrices lie on the Q4_1 grid: re-quantizing reproduces them exactly.
"$BIN" quantize -m "$MODEL" -o "$TMP/q4_1.gguf" --type q4_1 -t 2 --keep embd >"$TMP/q4_1.txt" 2>&1
check "quantize to q4_1 exits 0" test $? -eq 0
check "--keep embd keeps token_embd at q8_0" grep -qE "^token_embd\.weight +q8_0 -> q8_0 .* -$" "$TMP/q4_1.txt"
check "q4_1: quantized error is zero" grep -qE "rel rmse 0\.000000$" "$TMP/q4_1.txt"
python3 - "$MODEL" "$TMP/q4_1.gguf" >"$TMP/cmp" 2>&1 <<'PY'
import sys
import numpy as np
from gguf import GGUFReader
a, b = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
tb = {t.name: t for t in b.tensors}
n = same = 0
for t in a.tensors:
    u = tb[t.name]
    if t.tensor_type.name != "Q4_1" and t.tensor_type == u.tensor_type and np.asarray(t.data).tobytes() == np.asarray(u.data).tobytes():
        continue  # copied tensors: identical too
    n += 1
    if u.tensor_type.name == "Q4_1" and t.tensor_type.name == "Q4_1" and np.asarray(t.data).tobytes() == np.asarray(u.data).tobytes():
        same += 1
    else:
        print("differs:", t.name, t.tensor_type.name, "->", u.tensor_type.name)
print(f"{same}/{n} identical")
sys.exit(0 if n == 210 and same == n else 1)
PY
check "q4_1 requantization reproduces all 210 Q4_1 matrices byte for byte ($(tail -n 1 "$TMP/cmp"))" test $? -eq 0
rm -f "$TMP/q4_1.gguf"

# Rules and overrides.
"$BIN" quantize -m "$MODEL" -o "$TMP/mix.gguf" --type q8_0 -t 2 --keep layers=0,29 --keep 'blk.5.ffn_*:q5_1' \
  --tensor-type 'blk.1.attn_v.weight=f16' -q >"$TMP/mix.txt" 2>&1
check "mixed rules exit 0" test $? -eq 0
"$BIN" info "$TMP/mix.gguf" >"$TMP/mix.info" 2>&1
check "layers=0,29 kept at q4_1" test "$(grep -cE '^[0-9]+ +blk\.(0|29)\.\S+weight +q4_1 ' "$TMP/mix.info")" -eq 14
check "glob:q5_1 rule" test "$(grep -cE '^[0-9]+ +blk\.5\.ffn_(gate|up|down)\.weight +q5_1 ' "$TMP/mix.info")" -eq 3
check "--tensor-type override" grep -qE '^[0-9]+ +blk\.1\.attn_v\.weight +f16 ' "$TMP/mix.info"
check "keep rules recorded" grep -q 'slimlm.quantize.keep (string) = "layers=0,29 blk.5.ffn_\*:q5_1"' "$TMP/mix.info"
rm -f "$TMP/mix.gguf"

# Errors: one line, non-zero exit (the shared expect_error), and no output or temporary file left.
expect_error_no_file() {
  local d=$1
  expect_error "$@"
  if ls "$TMP"/out.gguf* >/dev/null 2>&1; then bad "$d: left $(ls "$TMP"/out.gguf*)"; rm -f "$TMP"/out.gguf*; else ok; fi
}
# Group formats: a 3-bit model with clipping search is written, recorded, and runs.
"$BIN" quantize -m "$MODEL" -o "$TMP/q3.gguf" --type q3g128 --clip-search -t 2 -q >"$TMP/q3.txt" 2>&1
check "q3g128 --clip-search exits 0" test $? -eq 0
check "q3g128: 3.125 bits per weight in the matrices" grep -q "quantized matrices: .* 3.1[0-9]* bits per weight" "$TMP/q3.txt"
"$BIN" info -m "$TMP/q3.gguf" >"$TMP/q3.info" 2>&1
check "q3g128: method recorded" grep -q 'slimlm.quantize.method (string) = "clip-search"' "$TMP/q3.info"
check "q3g128: every matrix in the format" test "$(grep -cE ' q3g128 +\[' "$TMP/q3.info")" -eq 211
"$BIN" run -m "$TMP/q3.gguf" -p "The capital of France is" -n 4 --temp 0 >/dev/null 2>&1
check "q3g128 model runs" test $? -eq 0
rm -f "$TMP/q3.gguf"
O="$TMP/out.gguf"
expect_error_no_file "unknown type" "$BIN" quantize -m "$MODEL" -o "$O" --type q9_9
expect_error_no_file "unknown group size" "$BIN" quantize -m "$MODEL" -o "$O" --type q4g100
expect_error_no_file "clip search for a type without a group layout" "$BIN" quantize -m "$MODEL" -o "$O" --type q5_0 --clip-search
expect_error_no_file "type without quantizer" "$BIN" quantize -m "$MODEL" -o "$O" --type q8_1
expect_error_no_file "missing --type" "$BIN" quantize -m "$MODEL" -o "$O"
expect_error_no_file "missing input" "$BIN" quantize -m "$TMP/nope.gguf" -o "$O" --type q8_0
printf 'not a model\n' >"$TMP/text.gguf"
expect_error_no_file "invalid input" "$BIN" quantize -m "$TMP/text.gguf" -o "$O" --type q8_0
cp "$MODEL" "$TMP/copy.gguf"
expect_error_no_file "output is the input (same path)" "$BIN" quantize -m "$TMP/copy.gguf" -o "$TMP/copy.gguf" --type q8_0
ln "$TMP/copy.gguf" "$TMP/hard.gguf"
expect_error_no_file "output is the input (same inode)" "$BIN" quantize -m "$TMP/copy.gguf" -o "$TMP/hard.gguf" --type q8_0
check "input untouched" cmp -s "$MODEL" "$TMP/copy.gguf"
rm -f "$TMP/copy.gguf" "$TMP/hard.gguf"
expect_error_no_file "missing output directory" "$BIN" quantize -m "$MODEL" -o "$TMP/no/dir/x.gguf" --type q8_0
mkdir "$TMP/ro"; chmod 555 "$TMP/ro"
if [ "$(id -u)" != 0 ]; then
  expect_error "unwritable output directory" "$BIN" quantize -m "$MODEL" -o "$TMP/ro/x.gguf" --type q8_0
fi
expect_error_no_file "bad --keep layers" "$BIN" quantize -m "$MODEL" -o "$O" --type q8_0 --keep layers=1,x
expect_error_no_file "bad --keep type" "$BIN" quantize -m "$MODEL" -o "$O" --type q8_0 --keep embd:q9_9
expect_error_no_file "--keep glob matching nothing" "$BIN" quantize -m "$MODEL" -o "$O" --type q8_0 --keep 'blk.*.nothing'
expect_error_no_file "bad --tensor-type" "$BIN" quantize -m "$MODEL" -o "$O" --type q8_0 --tensor-type token_embd.weight
# A full disk: a file size limit makes the kernel refuse the write (EFBIG, SIGXFSZ ignored).
expect_error_no_file "write failure (file size limit)" bash -c 'trap "" XFSZ; ulimit -f 20000; exec "$@"' _ \
  "$BIN" quantize -m "$MODEL" -o "$O" --type q8_0 -t 2 -q
check "write failure message" grep -q "write failed" "$TMP/e"
check "no temporary files left" test -z "$(ls -A "$TMP" | grep -v -E '^(ro|text\.gguf|q8_0\.[a-z]+|q4_0\.[a-z]+|q4_1\.txt|q3\.(txt|info)|cmp|mix\.(txt|info)|h|o|e)$')"
summary e2e_quantize
