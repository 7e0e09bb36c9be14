#!/usr/bin/env bash
# Speculative decoding from the CLI: with a compressed draft (a q2g64a copy of the fixture) and
# with prompt lookup, greedy output equals plain greedy output token for token on several
# prompts (raw and chat-wrapped); the statistics line is printed; sampling with a draft is
# reproducible by seed; bad flags and bad draft models give one-line errors.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

"$BIN" quantize -m "$MODEL" -o "$TMP/q2.gguf" --type q2g64a -q -t 2 >"$TMP/qlog" 2>&1
check "quantize a q2g64a draft ($(head -c 200 "$TMP/qlog"))" test -f "$TMP/q2.gguf"

# greedy equivalence: plain vs --draft vs --lookup
i=0
while IFS= read -r p; do
  i=$((i + 1))
  for chat in "" "--chat"; do
    ref=$("$BIN" run -m "$MODEL" -p "$p" $chat -n 16 --temp 0 -t 2 --print-ids --no-stats 2>"$TMP/e0")
    check "prompt $i$chat: plain run exits 0 ($(head -c 200 "$TMP/e0"))" test $? -eq 0
    check "prompt $i$chat: plain run prints ids" test "$(wc -w <<<"$ref")" -ge 1
    d=$("$BIN" run -m "$MODEL" -p "$p" $chat -n 16 --temp 0 -t 2 --print-ids --draft "$TMP/q2.gguf" 2>"$TMP/e1")
    check "prompt $i$chat: --draft exits 0 ($(head -c 200 "$TMP/e1"))" test $? -eq 0
    check "prompt $i$chat: --draft output = plain output" test "$d" = "$ref"
    l=$("$BIN" run -m "$MODEL" -p "$p" $chat -n 16 --temp 0 -t 2 --print-ids --lookup 3 --draft-max 6 2>"$TMP/e2")
    check "prompt $i$chat: --lookup exits 0 ($(head -c 200 "$TMP/e2"))" test $? -eq 0
    check "prompt $i$chat: --lookup output = plain output" test "$l" = "$ref"
    y=$("$BIN" run -m "$MODEL" -p "$p" $chat -n 16 --temp 0 -t 2 --print-ids --draft-layers 12 --draft-min-p 0 2>"$TMP/e3")
    check "prompt $i$chat: --draft-layers exits 0 ($(head -c 200 "$TMP/e3"))" test $? -eq 0
    check "prompt $i$chat: --draft-layers output = plain output" test "$y" = "$ref"
  done
  check "prompt $i: draft statistics line" grep -qE "^speculative \(draft model\): drafted [0-9]+, accepted [0-9]+ \([0-9.]+%\), [0-9]+ verification steps, [0-9.]+ tokens/step, [0-9.]+ tok/s" "$TMP/e1"
  check "prompt $i: lookup statistics line" grep -qE "^speculative \(lookup 3\): drafted" "$TMP/e2"
done <<'EOF'
The capital of France is
Repeat this sentence twice: the quick brown fox jumps over the lazy dog.
def square(x):\n    return x * x\n\ndef cube(x):
Write a list of the days of the week.
EOF
grep -E "^speculative" "$TMP/e1" "$TMP/e2"

# sampling with a draft: reproducible by seed
a=$("$BIN" run -m "$MODEL" -p "Once upon a time" -n 16 --temp 0.8 -s 5 -t 2 --print-ids --no-stats --draft "$TMP/q2.gguf")
b=$("$BIN" run -m "$MODEL" -p "Once upon a time" -n 16 --temp 0.8 -s 5 -t 2 --print-ids --no-stats --draft "$TMP/q2.gguf")
check "sampling with --draft: 16 ids" test "$(wc -w <<<"$a")" -eq 16
check "sampling with --draft: same seed, same tokens" test "$a" = "$b"
a=$("$BIN" run -m "$MODEL" -p "Once upon a time" -n 16 --temp 0.8 -s 5 -t 2 --print-ids --no-stats --lookup 2 --repeat-penalty 1.2)
check "sampling with --lookup and a repetition penalty: 16 ids" test "$(wc -w <<<"$a")" -eq 16

# chat: two turns, the same replies with prompt lookup and with the draft
printf 'Name three colors.\nRepeat your answer exactly.\n' >"$TMP/conv"
c0=$("$BIN" chat -m "$MODEL" -n 24 --temp 0 -t 2 <"$TMP/conv" 2>&1)
c1=$("$BIN" chat -m "$MODEL" -n 24 --temp 0 -t 2 --lookup 3 <"$TMP/conv" 2>&1)
c2=$("$BIN" chat -m "$MODEL" -n 24 --temp 0 -t 2 --draft "$TMP/q2.gguf" <"$TMP/conv" 2>&1)
check "chat: replies printed" test "$(wc -l <<<"$c0")" -ge 2
check "chat --lookup: same replies" test "$c1" = "$c0"
check "chat --draft: same replies" test "$c2" = "$c0"

# errors
python3 tests/reference/make_tiny_model.py "$TMP/tiny.gguf" >/dev/null 2>&1
check "tiny model written" test -f "$TMP/tiny.gguf"
expect_error "draft with another vocabulary" "$BIN" run -m "$MODEL" -p hi -n 4 --temp 0 --draft "$TMP/tiny.gguf"
grep -q "vocabulary" "$TMP/e" && ok || bad "another vocabulary: message names the vocabulary: $(cat "$TMP/e")"
expect_error "missing draft file" "$BIN" run -m "$MODEL" -p hi -n 4 --draft "$TMP/none.gguf"
expect_error "--draft-layers of every layer" "$BIN" run -m "$MODEL" -p hi -n 4 --draft-layers 30
expect_error "--draft-layers with --lookup" "$BIN" run -m "$MODEL" -p hi -n 4 --draft-layers 4 --lookup 2
expect_error "--draft-max 0" "$BIN" run -m "$MODEL" -p hi -n 4 --lookup 3 --draft-max 0
expect_error "--draft-max 65" "$BIN" run -m "$MODEL" -p hi -n 4 --lookup 3 --draft-max 65
expect_error "--lookup 0" "$BIN" run -m "$MODEL" -p hi -n 4 --lookup 0
expect_error "--draft and --lookup" "$BIN" run -m "$MODEL" -p hi -n 4 --lookup 3 --draft "$TMP/q2.gguf"
expect_error "--draft-max without a drafter" "$BIN" run -m "$MODEL" -p hi -n 4 --draft-max 4
expect_error "--draft-min-p 2" "$BIN" run -m "$MODEL" -p hi -n 4 --draft "$TMP/q2.gguf" --draft-min-p 2
expect_error "--draft without a value" "$BIN" run -m "$MODEL" -p hi -n 4 --draft
# bench --spec: the four prompts, outputs checked identical inside, a row and a JSON entry each
"$BIN" bench --spec --lookup 3 --draft-max 4 -n 16 -r 1 -t 1 --json "$TMP/spec.json" >"$TMP/bs" 2>"$TMP/bse"
check "bench --spec exits 0 ($(tail -c 200 "$TMP/bse"))" test $? -eq 0
check "bench --spec: four prompt rows" test "$(grep -cE '^\| (open-ended|summarize|code-rename|fix-spelling) ' "$TMP/bs")" -eq 4
check "bench --spec: JSON has the four prompts" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
names = sorted(r["prompt"] for r in d["results"])
assert names == ["code-rename", "fix-spelling", "open-ended", "summarize"], names
' "$TMP/spec.json"
summary e2e_speculative
