#!/usr/bin/env bash
# Seed corpus of the model loader's fuzzer (tests/fuzz/fuzz_model.c): tiny valid models, each
# under 64 KiB, one per storage form the loader binds: f32 and f16 layers, q8_0, per-tensor
# codebooks with outlier tables, per-row codebooks, sparse rows (bitmap and 2:4), shared layers with low-rank
# deltas, cross-layer KV sharing, and a qwen2 file with biases.
#   tests/fuzz/make_model_corpus.sh [OUT_DIR]   (uses $BUILD/slimlm, BUILD default build)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-tests/data/model-corpus}
slimlm=${BUILD:-build}/slimlm
[ -x "$slimlm" ] || { echo "error: $slimlm not built (make)" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tiny=(python3 tests/reference/make_tiny_model.py --dim 32 --heads 2 --kv-heads 1 --ffn 64 --vocab 288 --ctx 64)

# the base of the compressed forms: f16 layers, q8_0 token embedding
"${tiny[@]}" --layers 2 --type f16 --embd-type q8_0 --seed 1 "$out/f16.gguf"
"${tiny[@]}" --layers 1 --type f32 --embd-type q8_0 --seed 2 "$out/f32.gguf"
"${tiny[@]}" --layers 1 --type q4_1 --embd-type q4_0 --untied --arch qwen2 --seed 3 "$out/qwen2-q4_1.gguf"
base=$out/f16.gguf
"$slimlm" quantize -q -t 1 -m "$base" -o "$out/q8_0.gguf" --type q8_0
"$slimlm" cluster -q -t 1 -m "$base" -o "$out/cbt32-outliers.gguf" --k 32 --outliers 0.05
"$slimlm" cluster -q -t 1 -m "$base" -o "$out/cb16.gguf" --k 16
"$slimlm" prune -q -t 1 -m "$base" -o "$out/sparse50.gguf" --sparsity 0.5 --method magnitude
"$slimlm" prune -q -t 1 -m "$base" -o "$out/s24q4.gguf" --pattern 2:4 --type sparse4 --method magnitude
"$slimlm" share -q -m "$base" -o "$out/share-delta.gguf" --groups 1 --rank 4
"$slimlm" share -q -m "$base" -o "$out/kv-share.gguf" --kv-share 2
for f in "$out"/*.gguf; do
  n=$(stat -c %s "$f")
  [ "$n" -lt 65536 ] || { echo "error: $f is $n bytes (the fuzzer reads at most 65536)" >&2; exit 1; }
done
ls -l "$out"
