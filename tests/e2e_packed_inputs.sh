#!/usr/bin/env bash
# Every command that reads a model takes a packed file (slimlm pack) as it takes the GGUF:
# info prints the same lines plus one "packed:" line; quantize, awq, cluster, share, prune,
# tokenize and distill (packed teacher and student) give byte-identical output (cmp) from the
# packed and the unpacked input; a packed file with one flipped byte is refused by each with a
# one-line error, a non-zero exit and no output file.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh
VALID=../shared/data/wikitext2-valid.txt
if [ ! -f "$VALID" ]; then echo "FAIL: $VALID not found"; summary e2e_packed_inputs; exit 1; fi
head -c 60000 "$VALID" >"$TMP/text.txt"

P="$TMP/m.slmp"
"$BIN" pack "$MODEL" "$P" --codec zstd >/dev/null 2>"$TMP/e"
check "pack the fixture ($(head -c 200 "$TMP/e"))" test -s "$P"
check "the packed file differs from the GGUF" test "$(stat -c %s "$P")" -ne "$(stat -c %s "$MODEL")"

# info: the same text apart from the file line, plus one packed line giving the sizes
"$BIN" info "$MODEL" >"$TMP/i1" 2>&1
check "info on the GGUF exits 0" test $? -eq 0
"$BIN" info "$P" >"$TMP/i2" 2>&1
check "info on the packed file exits 0 ($(head -c 200 "$TMP/i2"))" test $? -eq 0
check "info on the GGUF has no packed line" test "$(grep -c '^packed:' "$TMP/i1")" -eq 0
check "info: packed line with both sizes" \
  grep -qE "^packed: +yes, $(stat -c %s "$P") bytes on disk for $(stat -c %s "$MODEL") bytes of GGUF" "$TMP/i2"
grep -v '^file:' "$TMP/i1" >"$TMP/i1b"
grep -v '^file:\|^packed:' "$TMP/i2" >"$TMP/i2b"
check "info: every other line is identical" cmp -s "$TMP/i1b" "$TMP/i2b"
check "info: tensor table present" test "$(wc -l <"$TMP/i1b")" -gt 272

# same NAME ARGS...: the command with -m GGUF and with -m packed writes identical files
same() {
  local name=$1; shift
  "$BIN" "$@" -m "$MODEL" -o "$TMP/$name.a" >/dev/null 2>"$TMP/e"
  check "$name on the GGUF exits 0 ($(head -c 200 "$TMP/e"))" test -s "$TMP/$name.a"
  "$BIN" "$@" -m "$P" -o "$TMP/$name.b" >/dev/null 2>"$TMP/e"
  check "$name on the packed file exits 0 ($(head -c 200 "$TMP/e"))" test -s "$TMP/$name.b"
  check "$name: identical output from the packed input" cmp -s "$TMP/$name.a" "$TMP/$name.b"
  rm -f "$TMP/$name.a" "$TMP/$name.b"
}
same quantize quantize --type q4_0 -t 2 -q
same awq awq --samples 2 --seq 32 --keep-rows 32 --grid 3 --text "$TMP/text.txt" -t 2 -q
same cluster cluster --k 4 -t 2 -q
same share share --groups 15 -q
same prune prune --method magnitude --sparsity 0.5 --type q8_0 -t 2 -q

"$BIN" tokenize -m "$MODEL" -f "$TMP/text.txt" --ids >"$TMP/t1" 2>&1
check "tokenize on the GGUF exits 0" test $? -eq 0
"$BIN" tokenize -m "$P" -f "$TMP/text.txt" --ids >"$TMP/t2" 2>&1
check "tokenize on the packed file exits 0 ($(head -c 200 "$TMP/t2"))" test $? -eq 0
check "tokenize: identical ids" cmp -s "$TMP/t1" "$TMP/t2"
check "tokenize: many ids" test "$(tr ',' '\n' <"$TMP/t1" | wc -l)" -gt 1000

# distill: a tiny teacher and a smaller student, both packed. The output records the
# teacher's base name, so the GGUF and the packed files share names in two directories.
mkdir -p "$TMP/g" "$TMP/p"
python3 tests/reference/make_tiny_model.py "$TMP/g/teacher" --layers 4 --dim 64 --type f32 >/dev/null
python3 tests/reference/make_tiny_model.py "$TMP/g/student" --layers 2 --dim 64 --type f32 >/dev/null
"$BIN" pack "$TMP/g/teacher" "$TMP/p/teacher" >/dev/null 2>&1
"$BIN" pack "$TMP/g/student" "$TMP/p/student" >/dev/null 2>&1
check "tiny models packed" test -s "$TMP/p/teacher" -a -s "$TMP/p/student"
check "tiny teacher: the packed file is not the GGUF" test "$(head -c 7 "$TMP/p/teacher")" = SLMPACK
D=(--data "$TMP/text.txt" --tokens 0 --seq 16 --batch 2 --eval-tokens 64 -t 1 -q)
for ty in f32 q8_0; do
  "$BIN" distill --teacher "$TMP/g/teacher" --student "$TMP/g/student" -o "$TMP/d.a" "${D[@]}" --type $ty >/dev/null 2>"$TMP/e"
  check "distill --type $ty from GGUF files exits 0 ($(head -c 200 "$TMP/e"))" test -s "$TMP/d.a"
  "$BIN" distill --teacher "$TMP/p/teacher" --student "$TMP/p/student" -o "$TMP/d.b" "${D[@]}" --type $ty >/dev/null 2>"$TMP/e"
  check "distill --type $ty from packed files exits 0 ($(head -c 200 "$TMP/e"))" test -s "$TMP/d.b"
  check "distill --type $ty: identical student from packed inputs" cmp -s "$TMP/d.a" "$TMP/d.b"
  rm -f "$TMP/d.a" "$TMP/d.b"
done

# A flipped byte in the middle of the packed file: every command refuses it, writes nothing.
cp "$P" "$TMP/bad.slmp"
python3 -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(0,2); o=f.tell()//2; f.seek(o); c=f.read(1); f.seek(o); f.write(bytes([c[0]^0x5a]))" "$TMP/bad.slmp"
B="$TMP/bad.slmp"
refused() { # NAME COMMAND...: one-line error, non-zero exit, no output
  local name=$1; shift
  expect_error "$name refuses a damaged packed file" "$@"
  check "$name: the error names the file ($(cat "$TMP/e"))" grep -q "bad.slmp" "$TMP/e"
  if ls "$TMP"/out* >/dev/null 2>&1; then bad "$name: left $(ls "$TMP"/out*)"; rm -f "$TMP"/out*; else ok; fi
}
refused info "$BIN" info "$B"
refused quantize "$BIN" quantize -m "$B" -o "$TMP/out.gguf" --type q4_0 -t 2 -q
refused awq "$BIN" awq -m "$B" -o "$TMP/out.gguf" --samples 2 --seq 32 --text "$TMP/text.txt" -t 2 -q
refused cluster "$BIN" cluster -m "$B" -o "$TMP/out.gguf" --k 4 -t 2 -q
refused share "$BIN" share -m "$B" -o "$TMP/out.gguf" --groups 15 -q
refused prune "$BIN" prune -m "$B" -o "$TMP/out.gguf" --method magnitude --sparsity 0.5 -t 2 -q
refused tokenize "$BIN" tokenize -m "$B" -p "Hello world"
cp "$TMP/p/student" "$TMP/sbad.slmp"
python3 -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(0,2); o=f.tell()//2; f.seek(o); c=f.read(1); f.seek(o); f.write(bytes([c[0]^0x5a]))" "$TMP/sbad.slmp"
expect_error "distill refuses a damaged packed student" \
  "$BIN" distill --teacher "$TMP/p/teacher" --student "$TMP/sbad.slmp" -o "$TMP/out.gguf" "${D[@]}"
check "distill: the error names the student ($(cat "$TMP/e"))" grep -q "sbad.slmp" "$TMP/e"
expect_error "distill refuses a damaged packed teacher" \
  "$BIN" distill --teacher "$TMP/sbad.slmp" -o "$TMP/out.gguf" "${D[@]}"
if ls "$TMP"/out* >/dev/null 2>&1; then bad "distill: left $(ls "$TMP"/out*)"; else ok; fi

# --help names packed inputs
for c in info quantize awq cluster share tokenize distill; do
  "$BIN" $c --help >"$TMP/h" 2>&1
  check "$c --help mentions packed files" grep -q "GGUF or packed file" "$TMP/h"
done
summary e2e_packed_inputs
