#!/usr/bin/env bash
# End-to-end generation on the real model: greedy names Paris, sampling is reproducible by seed.
# asan: yes
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

out=$("$BIN" run -m "$MODEL" -p "The capital of France is" -n 16 --temp 0 --no-stats 2>"$TMP/err")
echo "greedy: $out"
check "run exits 0" test -z "$(cat "$TMP/err")"
check "greedy continuation names Paris" grep -q "Paris" <<<"$out"
check "output starts with the prompt" grep -q "^The capital of France is" <<<"$out"

a=$("$BIN" run -m "$MODEL" -p "Once upon a time" -n 12 --temp 1.0 -s 7 --no-stats --print-ids)
b=$("$BIN" run -m "$MODEL" -p "Once upon a time" -n 12 --temp 1.0 -s 7 --no-stats --print-ids)
c=$("$BIN" run -m "$MODEL" -p "Once upon a time" -n 12 --temp 1.0 -s 8 --no-stats --print-ids)
echo "seed 7: $a / seed 8: $c"
check "same seed, same tokens" test "$a" = "$b"
check "12 ids printed" test "$(wc -w <<<"$a")" -eq 12
check "another seed, other tokens" test "$a" != "$c"

out=$("$BIN" run -m "$MODEL" --chat -p "What is the capital of France? Answer in one word." -n 16 --temp 0 --no-stats)
echo "chat-wrapped: $out"
check "chat-wrapped prompt answers Paris" grep -q "Paris" <<<"$out"
summary e2e_generate
