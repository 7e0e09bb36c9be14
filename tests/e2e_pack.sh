#!/usr/bin/env bash
# slimlm pack / unpack: every codec restores the exact bytes (cmp) of the Q4_1 fixture (q4_1,
# q8_0, f32) and of a mixed file (f32, f16, q8_0, q4_k, q5_0, q4g128 matrices); run and logits
# on a packed file give the same output as on the original; a flipped byte in a tensor segment,
# a truncated file or a damaged header is a one-line error naming what is wrong, with no
# output file left; bad flags are usage errors.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

"$BIN" pack --help >"$TMP/h" 2>&1
check "pack --help exits 0" test $? -eq 0
check "pack --help prints usage" grep -q "usage: slimlm pack IN OUT" "$TMP/h"
"$BIN" unpack --help >"$TMP/h" 2>&1
check "unpack --help exits 0" test $? -eq 0
check "unpack --help prints usage" grep -q "usage: slimlm unpack IN OUT" "$TMP/h"

# A file with every other tensor type: f32, f16, q4g128 and q8_0 layers, q4_k (q5_0 where rows
# are not whole super-blocks) elsewhere, token_embd kept at q8_0.
MIX="$TMP/mix.gguf"
"$BIN" quantize -m "$MODEL" -o "$MIX" --type q4_k --keep embd --tensor-type 'blk.0.*=f32' \
  --tensor-type 'blk.1.*=f16' --tensor-type 'blk.2.*=q4g128' --tensor-type 'blk.3.*=q8_0' -t 2 -q >/dev/null 2>&1
check "mixed model written" test -s "$MIX"

# Round trips: every codec, both files, byte for byte.
for src in fixture mix; do
  if [ $src = fixture ]; then IN=$MODEL; else IN=$MIX; fi
  for codec in auto own zstd raw; do
    P="$TMP/$src.$codec.slmp"
    "$BIN" pack "$IN" "$P" --codec $codec >"$TMP/pack.txt" 2>"$TMP/pack.err"
    check "$src: pack --codec $codec exits 0 ($(head -c 200 "$TMP/pack.err"))" test $? -eq 0
    cp "$TMP/pack.txt" "$TMP/$src.$codec.txt"
    check "$src/$codec: summary totals" grep -qE "^total: [0-9]+ segments, $(stat -c %s "$IN") -> $(stat -c %s "$P") bytes" "$TMP/pack.txt"
    "$BIN" unpack "$P" "$TMP/back.gguf" >/dev/null 2>"$TMP/unpack.err"
    check "$src/$codec: unpack exits 0 ($(head -c 200 "$TMP/unpack.err"))" test $? -eq 0
    check "$src/$codec: unpacked file is byte-identical" cmp -s "$IN" "$TMP/back.gguf"
    rm -f "$TMP/back.gguf"
    case $codec in
      own|auto) check "$src/$codec: smaller than the input" test "$(stat -c %s "$P")" -lt "$(stat -c %s "$IN")" ;;
      raw) check "$src/raw: every segment stored" test -z "$(awk 'NR>1 && !/^total|^wrote/ && $6 != "raw"' "$TMP/pack.txt")" ;;
    esac
    [ $codec = auto ] || [ $codec = own ] || [ $src.$codec = fixture.raw ] || rm -f "$P"
  done
done
check "fixture: table lists q4_1, q8_0, f32 and metadata" \
  test "$(grep -cE '^(q4_1|q8_0|f32|metadata) +[0-9]+' "$TMP/fixture.own.txt")" -eq 4
check "mix: table lists f32, f16, q8_0, q4_k, q5_0, q4g128" \
  test "$(grep -cE '^(f32|f16|q8_0|q4_k|q5_0|q4g128) +[0-9]+' "$TMP/mix.own.txt")" -eq 6
check "auto is no larger than own" test "$(stat -c %s "$TMP/fixture.auto.slmp")" -le "$(stat -c %s "$TMP/fixture.own.slmp")"

# Loading a packed file directly: the same greedy text and the same logits.
gen() { "$BIN" run -m "$1" -p "The capital of France is" -n 8 --temp 0 -t 1 2>"$TMP/gen.err"; }
gen "$MODEL" >"$TMP/a.txt"
gen "$TMP/fixture.auto.slmp" >"$TMP/b.txt"
check "run on the packed fixture exits 0 ($(head -c 200 "$TMP/gen.err"))" test $? -eq 0
check "run: packed fixture gives the same text" cmp -s "$TMP/a.txt" "$TMP/b.txt"
check "run: text is not empty" test "$(wc -c <"$TMP/a.txt")" -gt 26
gen "$MIX" >"$TMP/a.txt"
gen "$TMP/mix.own.slmp" >"$TMP/b.txt"
check "run: packed mixed model gives the same text" cmp -s "$TMP/a.txt" "$TMP/b.txt"
"$BIN" logits -m "$MIX" --ids 1,2,3,4 --out "$TMP/la.bin" -t 1 >/dev/null 2>&1
"$BIN" logits -m "$TMP/mix.auto.slmp" --ids 1,2,3,4 --out "$TMP/lb.bin" -t 1 >/dev/null 2>&1
check "logits: packed mixed model gives identical logits" cmp -s "$TMP/la.bin" "$TMP/lb.bin"
check "logits: 4 x vocab floats" test "$(stat -c %s "$TMP/la.bin")" -eq $((4 * 49152 * 4))
rm -f "$TMP/la.bin" "$TMP/lb.bin" "$TMP/a.txt" "$TMP/b.txt" "$MIX" "$TMP/mix.auto.slmp"

# Damage. seg_at FILE NAME: byte offset of the middle of a segment's coded bytes.
seg_at() {
  python3 - "$1" "$2" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack_from("<I", b, 12)[0]
pos = 64
for _ in range(n):
    codec, nl, dtype, raw, coded, crc = struct.unpack_from("<BBIQQI", b, pos)
    name = b[pos + 26:pos + 26 + nl].decode()
    pos += 26 + nl
    if name == sys.argv[2]:
        print(pos + coded // 2)
        break
    pos += coded
PY
}
flip() { # FILE OFFSET: xor one byte with 0x5a
  python3 -c "import sys; f=open(sys.argv[1],'r+b'); o=int(sys.argv[2]); f.seek(o); c=f.read(1); f.seek(o); f.write(bytes([c[0]^0x5a]))" "$1" "$2"
}
no_output() { if ls "$TMP"/out.gguf* >/dev/null 2>&1; then bad "$1: left $(ls "$TMP"/out.gguf*)"; rm -f "$TMP"/out.gguf*; else ok; fi; }
T=blk.3.ffn_up.weight
for codec in own raw; do
  cp "$TMP/fixture.$codec.slmp" "$TMP/bad.slmp"
  off=$(seg_at "$TMP/bad.slmp" $T)
  check "$codec: segment of $T found" test -n "$off"
  flip "$TMP/bad.slmp" "${off:-100}"
  expect_error "$codec: unpack of a flipped byte" "$BIN" unpack "$TMP/bad.slmp" "$TMP/out.gguf"
  check "$codec: the error names the tensor ($(cat "$TMP/e"))" grep -q "pack: tensor '$T': " "$TMP/e"
  no_output "$codec: flipped byte"
  expect_error "$codec: run on a flipped byte" "$BIN" run -m "$TMP/bad.slmp" -p hi -n 1 -t 1
  check "$codec: run error names the tensor" grep -q "tensor '$T'" "$TMP/e"
done
check "raw: a flipped byte is a checksum mismatch" grep -q "pack: tensor '$T': checksum mismatch" "$TMP/e"
cp "$TMP/fixture.auto.slmp" "$TMP/bad.slmp"
head -c $(($(stat -c %s "$TMP/bad.slmp") - 1000)) "$TMP/bad.slmp" >"$TMP/trunc.slmp"
expect_error "truncated file" "$BIN" unpack "$TMP/trunc.slmp" "$TMP/out.gguf"
check "truncation is named ($(cat "$TMP/e"))" grep -q "truncated" "$TMP/e"
no_output "truncated file"
head -c 40 "$TMP/bad.slmp" >"$TMP/trunc.slmp"
expect_error "file shorter than the header" "$BIN" unpack "$TMP/trunc.slmp" "$TMP/out.gguf"
expect_error "run on a truncated file" "$BIN" run -m "$TMP/trunc.slmp" -p hi -n 1 -t 1
flip "$TMP/bad.slmp" 30   # inside the recorded SHA-256
expect_error "damaged whole-file hash" "$BIN" unpack "$TMP/bad.slmp" "$TMP/out.gguf"
check "hash mismatch is named" grep -q "SHA-256 mismatch" "$TMP/e"
no_output "damaged hash"
printf 'SLMPACK\032\001\000\000\000\377\377\377\377' >"$TMP/hdr.slmp"; head -c 100 /dev/zero >>"$TMP/hdr.slmp"
expect_error "absurd segment count" "$BIN" unpack "$TMP/hdr.slmp" "$TMP/out.gguf"
rm -f "$TMP/bad.slmp" "$TMP/trunc.slmp" "$TMP/hdr.slmp"

# Usage errors.
P="$TMP/fixture.own.slmp"
expect_error "unknown codec" "$BIN" pack "$MODEL" "$TMP/out.gguf" --codec lzma
expect_error "level out of range" "$BIN" pack "$MODEL" "$TMP/out.gguf" --level 99
expect_error "level missing" "$BIN" pack "$MODEL" "$TMP/out.gguf" --level
expect_error "unknown option" "$BIN" pack "$MODEL" "$TMP/out.gguf" --fast
expect_error "missing output" "$BIN" pack "$MODEL"
expect_error "extra argument" "$BIN" unpack "$P" "$TMP/out.gguf" extra
expect_error "output is the input" "$BIN" pack "$MODEL" "$MODEL"
expect_error "packing a packed file" "$BIN" pack "$P" "$TMP/out.gguf"
expect_error "unpacking a GGUF file" "$BIN" unpack "$MODEL" "$TMP/out.gguf"
expect_error "missing input" "$BIN" unpack "$TMP/nope.slmp" "$TMP/out.gguf"
no_output "usage errors"
check "no temporary files left" test -z "$(ls -A "$TMP" | grep -E 'tmp' || true)"
summary e2e_pack
