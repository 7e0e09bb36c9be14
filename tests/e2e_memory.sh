#!/usr/bin/env bash
# Compression's peak memory does not grow with the number of layers: synthetic Llama-shaped F16
# models of 2, 8 and 32 layers of the same width (scripts/make_synthetic_model.py) are
# quantized to q4_0 and AWQ'd, and the 32-layer run, whose input is ~14x larger, must stay
# within a few layers' bytes of the 2-layer run.
#
# How memory is read:
#  - quantize: the kernel's own peak resident set of the process (getrusage ru_maxrss of the
#    child, exact, no sampling), which counts the mmapped input and the read-back of the
#    output too, so it only stays flat if the tensors are streamed and the file pages dropped.
#  - awq: the calibration runs layer by layer (every window through one layer, then the next)
#    and the scale search one layer at a time, each dropping the mapped pages after a layer, so
#    the same exact peak (ru_maxrss) is bounded; and anonymous memory (RssAnon of
#    /proc/PID/status, polled every 2 ms; what it holds for long, the calibration rows and
#    converted tensors, cannot be missed by the polling). Both bounds allow for the
#    calibration's own per-layer state (sampled input rows, KV cache), which is the input of
#    the search and grows with the layers by design.
# Not marked for the ASan run: the sanitizer's quarantine and shadow memory make peak-memory
# bounds meaningless there.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

DIM=256 FFN=768 KEEP=16 SEQ=64
# one layer's F16 bytes: q, k, v, o (k and v at kv_dim = dim / 2) and gate, up, down
LAYER=$(( (2 * DIM * DIM + 2 * DIM * DIM / 2 + 3 * DIM * FFN) * 2 ))
# per layer state of the calibration: KEEP sampled rows of the 4 inputs (3 x dim, ffn) in f32,
# and the KV cache of one window (SEQ x kv_dim x K and V, f32)
CALIB=$(( KEEP * (3 * DIM + FFN) * 4 + SEQ * DIM / 2 * 2 * 4 ))
head -c 60000 ../shared/data/wikitext2-valid.txt >"$TMP/calib.txt" 2>/dev/null ||
  python3 -c 'print("The quick brown fox jumps over the lazy dog. " * 600)' >"$TMP/calib.txt"

# peak KIND CMD...: prints "ru_maxrss_kib peak_rss_anon_kib"; fails when the command fails
peak() {
  python3 - "$@" <<'EOF'
import resource, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
anon = 0
while p.poll() is None:
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = max(anon, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.002)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, anon)
sys.exit(p.returncode)
EOF
}

declare -A QRSS AANON ARSS
for L in 2 8 32; do
  python3 scripts/make_synthetic_model.py "$TMP/m$L.gguf" --layers $L --dim $DIM --ffn $FFN --heads 4 \
    --kv-heads 2 --vocab 1024 >/dev/null
  check "synthetic model of $L layers written" test -s "$TMP/m$L.gguf"
  r=$(peak "$BIN" quantize -m "$TMP/m$L.gguf" -o "$TMP/q$L.gguf" --type q4_0 -t 1 -q)
  check "quantize $L layers exits 0" test $? -eq 0
  QRSS[$L]=${r% *}
  r=$(peak "$BIN" awq -m "$TMP/m$L.gguf" -o "$TMP/a$L.gguf" --text "$TMP/calib.txt" --samples 4 --seq $SEQ \
    --keep-rows $KEEP --grid 4 -t 1 -q)
  check "awq $L layers exits 0" test $? -eq 0
  AANON[$L]=${r#* }
  ARSS[$L]=${r% *}
  "$BIN" run -m "$TMP/a$L.gguf" -p "The quick brown fox" -n 4 --temp 0 -t 1 >"$TMP/gen" 2>&1
  check "awq output of $L layers runs" test $? -eq 0
  printf "layers %2d: input %6d KiB, quantize peak RSS %6d KiB, awq peak RSS %6d KiB, anon %6d KiB\n" $L \
    $(( $(stat -c %s "$TMP/m$L.gguf") / 1024 )) "${QRSS[$L]}" "${ARSS[$L]}" "${AANON[$L]}"
  rm -f "$TMP/q$L.gguf" "$TMP/a$L.gguf"
done

# The quantized synthetic model is a valid model of q4_0 matrices.
"$BIN" quantize -m "$TMP/m8.gguf" -o "$TMP/q8.gguf" --type q4_0 -t 1 -q >/dev/null 2>&1
"$BIN" info "$TMP/q8.gguf" >"$TMP/info" 2>&1
check "q4_0 synthetic: 8 x 7 layer matrices + token_embd are q4_0" \
  test "$(grep -cE '^[0-9]+ +(blk|token_embd)\S+ +q4_0 ' "$TMP/info")" -eq 57

bound_q=$(( QRSS[2] + 3 * LAYER / 1024 ))
bound_a=$(( AANON[2] + 3 * LAYER / 1024 + 30 * CALIB / 1024 ))
echo "one layer: $(( LAYER / 1024 )) KiB; quantize bound (2-layer peak + 3 layers): $bound_q KiB;" \
  "awq anon bound (2-layer peak + 3 layers + 30 x $(( CALIB / 1024 )) KiB calibration state): $bound_a KiB"
check "quantize: 32-layer peak RSS ${QRSS[32]} KiB <= $bound_q KiB" test "${QRSS[32]}" -le $bound_q
check "quantize: 8-layer peak RSS ${QRSS[8]} KiB <= $bound_q KiB" test "${QRSS[8]}" -le $bound_q
check "awq: 32-layer peak anon ${AANON[32]} KiB <= $bound_a KiB" test "${AANON[32]}" -le $bound_a
bound_ar=$(( ARSS[2] + 3 * LAYER / 1024 + 30 * CALIB / 1024 ))
check "awq: 32-layer peak RSS ${ARSS[32]} KiB <= $bound_ar KiB (2-layer peak + 3 layers + calibration state)" test "${ARSS[32]}" -le $bound_ar
# the input really is larger than the bound: the check above could not pass by accident
check "32-layer input larger than the quantize bound" test $(( $(stat -c %s "$TMP/m32.gguf") / 1024 )) -gt $bound_q
summary e2e_memory
