#!/usr/bin/env bash
# The command line: --help everywhere, and bad input gives one clear line and a non-zero exit.
# asan: yes
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

for c in run chat info perplexity tokenize logits; do
  "$BIN" $c --help >"$TMP/h" 2>&1
  check "$c --help exits 0" test $? -eq 0
  check "$c --help prints usage" grep -q "usage: slimlm $c" "$TMP/h"
done
"$BIN" --help >"$TMP/h" 2>&1; check "top-level --help" grep -q "commands:" "$TMP/h"

expect_error "unknown command" "$BIN" frobnicate
expect_error "unknown flag" "$BIN" run -m "$MODEL" -p hi --bogus
expect_error "missing flag value" "$BIN" run -m "$MODEL" -p
expect_error "bad -n" "$BIN" run -m "$MODEL" -p hi -n -5
expect_error "bad --temp" "$BIN" run -m "$MODEL" -p hi --temp abc
expect_error "bad --top-p" "$BIN" run -m "$MODEL" -p hi --top-p 1.5
expect_error "no prompt" "$BIN" run -m "$MODEL"
expect_error "bad --ids" "$BIN" run -m "$MODEL" --ids 1,x,3
expect_error "token id out of range" "$BIN" run -m "$MODEL" --ids 1,99999999 -n 1
expect_error "missing model file" "$BIN" run -m "$TMP/nope.gguf" -p hi
expect_error "model is a directory" "$BIN" run -m "$TMP" -p hi
printf 'this is not a gguf file at all, just text\n' >"$TMP/text.gguf"
expect_error "not a GGUF file" "$BIN" run -m "$TMP/text.gguf" -p hi
: >"$TMP/empty.gguf"
expect_error "empty file" "$BIN" info "$TMP/empty.gguf"
head -c 1000000 "$MODEL" >"$TMP/trunc.gguf"
expect_error "truncated model (header intact, data cut)" "$BIN" run -m "$TMP/trunc.gguf" -p hi
head -c 5000 "$MODEL" >"$TMP/trunc2.gguf"
expect_error "truncated model (inside the metadata)" "$BIN" info "$TMP/trunc2.gguf"
expect_error "prompt longer than the context" "$BIN" run -m "$MODEL" -c 16 -p "$(printf 'word %.0s' $(seq 1 40))"
expect_error "perplexity without -f" "$BIN" perplexity -m "$MODEL"
expect_error "perplexity text too short" "$BIN" perplexity -m "$MODEL" -f tests/e2e_lib.sh --ctx 4096
expect_error "logits without --out" "$BIN" logits -m "$MODEL" --ids 1,2
expect_error "logits into a missing directory" "$BIN" logits -m "$MODEL" --ids 1,2 --out "$TMP/no/such/dir/x.f32"
expect_error "chat with an unknown template" "$BIN" chat -m "$MODEL" --template vicuna
expect_error "tokenize: unknown flag" "$BIN" tokenize -m "$MODEL" -p hi --bogus
expect_error "tokenize: no text" "$BIN" tokenize -m "$MODEL"
expect_error "tokenize: not a GGUF file" "$BIN" tokenize -m "$TMP/text.gguf" -p hi
expect_error "info: unknown flag" "$BIN" info --bogus
expect_error "logits: truncated model" "$BIN" logits -m "$TMP/trunc2.gguf" --ids 1 --out "$TMP/x.f32"
expect_error "bench: not a GGUF file" "$BIN" bench -m "$TMP/text.gguf" -p 8 -n 0 --no-membw
expect_error "quantize: truncated model" "$BIN" quantize -m "$TMP/trunc.gguf" -o "$TMP/q.gguf" --type q8_0
expect_error "bad --isa" "$BIN" run -m "$MODEL" -p hi --isa sse9
expect_error "bad --kv-type" "$BIN" run -m "$MODEL" -p hi --kv-type q2
expect_error "bad -t" "$BIN" run -m "$MODEL" -p hi -t 0

"$BIN" info "$MODEL" >"$TMP/info" 2>&1
check "info exits 0" test $? -eq 0
check "info names the architecture" grep -q "architecture: llama: 30 layers, dim 576" "$TMP/info"
check "info lists 272 tensors" test "$(grep -cE '^[0-9]+ +(blk|token_embd|output)' "$TMP/info")" -eq 272
check "info reports bits per weight" grep -qE "^total: .* bits per weight" "$TMP/info"
check "info shows the chat template key" grep -q "tokenizer.chat_template" "$TMP/info"

"$BIN" logits -m "$MODEL" --ids 504,3575,282 --out "$TMP/l.f32" 2>"$TMP/e"
check "logits writes [3][49152] floats" test "$(stat -c %s "$TMP/l.f32")" -eq $((3 * 49152 * 4))
check "tokenize matches the reference ids" test "$("$BIN" tokenize -m "$MODEL" -p "The capital of France is" --ids)" = "[504, 3575, 282, 4649, 314]"
summary e2e_cli
