#!/usr/bin/env bash
# `slimlm chat` over a pipe: answers a simple question, keeps context across turns.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

out=$(printf 'What is the capital of France? Answer briefly.\n' | "$BIN" chat -m "$MODEL" --temp 0 -n 48 2>"$TMP/err")
echo "answer: $out"
check "chat exits cleanly" test -z "$(cat "$TMP/err")"
check "chat answers Paris" grep -q "Paris" <<<"$out"

out=$(printf 'My name is Alice.\nWhat is my name?\n' | "$BIN" chat -m "$MODEL" --temp 0 -n 24 -v 2>"$TMP/err")
cat "$TMP/err"
first=$(sed -n 1p "$TMP/err" | sed -E 's/.*prompt: ([0-9]+) tokens reused from the cache, ([0-9]+) evaluated.*/\1 \2/')
second=$(sed -n 2p "$TMP/err" | sed -E 's/.*prompt: ([0-9]+) tokens reused from the cache, ([0-9]+) evaluated.*/\1 \2/')
check "first turn evaluates its whole prompt" test "${first%% *}" = 0
check "second turn reuses the cached first turn" test "${second%% *}" -ge "${first#* }"
out=$(printf 'My name is Alice.\n/reset\nWhat is 2+2?\n/exit\nignored\n' | "$BIN" chat -m "$MODEL" --temp 0 -n 24 2>"$TMP/err")
check "/reset is acknowledged" grep -q "reset" "$TMP/err"
check "/exit stops reading" test "$(grep -c . <<<"$out")" -ge 2
summary e2e_chat
