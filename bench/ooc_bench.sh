#!/usr/bin/env bash
# ooc_bench.sh - peak memory and time of quantize and awq on a large synthetic model.
#
#   bench/ooc_bench.sh [JSON_OUT]      (default $TMPDIR/ooc_bench.json, TMPDIR /tmp)
#
# Makes a Llama-shaped F16 model with random weights (scripts/make_synthetic_model.py; the
# default shape is ~2.7B parameters, ~5.4 GB: 26 layers, dim 3072, ffn 8192, 24 / 8 heads,
# vocab 32000) in a temporary directory, then runs `slimlm quantize --type q4_0` and
# `slimlm awq` with a small calibration on it, and prints per run: wall time, the peak
# resident set (getrusage, exact) and the peaks of its anonymous and file-backed parts
# (RssAnon / RssFile of /proc/PID/status, polled every 20 ms), against the model's size.
# Everything made is deleted at the end.
#
# Environment: SLIMLM_BIN (build/slimlm), BASE_BIN (a second binary to compare, e.g. an older
# build; optional), THREADS (2), LAYERS DIM FFN HEADS KV_HEADS VOCAB (the shape),
# AWQ_FLAGS (calibration and search of the awq run), TMPDIR (where the model is made).
set -eu
cd "$(dirname "$0")/.."
BIN=${SLIMLM_BIN:-build/slimlm}
BASE_BIN=${BASE_BIN:-}
JSON=${1:-${TMPDIR:-/tmp}/ooc_bench.json}
THREADS=${THREADS:-2}
LAYERS=${LAYERS:-26} DIM=${DIM:-3072} FFN=${FFN:-8192} HEADS=${HEADS:-24} KV_HEADS=${KV_HEADS:-8} VOCAB=${VOCAB:-32000}
AWQ_FLAGS=${AWQ_FLAGS:---samples 4 --seq 128 --keep-rows 128 --grid 4}
TEXT=../shared/data/wikitext2-valid.txt
[ -x "$BIN" ] || { echo "ooc_bench: $BIN not built" >&2; exit 1; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/ooc_bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
# parameters and bytes of the F16 model, to check the free space first
PARAMS=$(( VOCAB * DIM + LAYERS * (2 * DIM * DIM + 2 * DIM * DIM * KV_HEADS / HEADS + 3 * DIM * FFN + 2 * DIM) + DIM ))
NEED_KIB=$(( PARAMS * 2 * 2 / 1024 + PARAMS / 1024 ))   # input, f32 head room for the outputs
FREE_KIB=$(df -Pk "$DIR" | awk 'NR == 2 { print $4 }')
if [ "$FREE_KIB" -lt "$NEED_KIB" ]; then
  echo "ooc_bench: $DIR has $((FREE_KIB / 1048576)) GiB free, $((NEED_KIB / 1048576)) GiB needed" >&2
  exit 1
fi
head -c 2000000 "$TEXT" >"$DIR/calib.txt"

t0=$(date +%s.%N)
python3 scripts/make_synthetic_model.py "$DIR/model.gguf" --layers "$LAYERS" --dim "$DIM" --ffn "$FFN" \
  --heads "$HEADS" --kv-heads "$KV_HEADS" --vocab "$VOCAB" --type f16 >/dev/null
MODEL_BYTES=$(stat -c %s "$DIR/model.gguf")
printf "model: %d layers, dim %d, ffn %d, %d parameters, %.2f GiB F16 (made in %.0f s)\n" "$LAYERS" "$DIM" "$FFN" \
  "$PARAMS" "$(echo "$MODEL_BYTES / 1073741824" | bc -l)" "$(echo "$(date +%s.%N) - $t0" | bc -l)"

# measure NAME CMD...: one JSON object on stdout (time, peaks in KiB, output size)
measure() {
  local name=$1; shift
  python3 - "$name" "$@" <<'EOF'
import json, os, resource, subprocess, sys, time
name, cmd = sys.argv[1], sys.argv[2:]
out = cmd[cmd.index("-o") + 1]
t0 = time.time()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
peak = {"RssAnon": 0, "RssFile": 0}
while p.poll() is None:
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                k = line.split(":")[0]
                if k in peak:
                    peak[k] = max(peak[k], int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.02)
err = p.stderr.read().decode(errors="replace")
if p.returncode:
    sys.exit(f"{name}: exit {p.returncode}: {err.strip()[-500:]}")
print(json.dumps({"run": name, "seconds": round(time.time() - t0, 1),
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "peak_anon_kib": peak["RssAnon"], "peak_file_kib": peak["RssFile"],
                  "output_bytes": os.path.getsize(out)}))
os.remove(out)
EOF
}

ROWS=()
for b in "$BIN" $BASE_BIN; do
  tag=$([ "$b" = "$BIN" ] && echo "" || echo " (base)")
  ROWS+=("$(measure "quantize q4_0$tag" "$b" quantize -m "$DIR/model.gguf" -o "$DIR/q4_0.gguf" --type q4_0 \
    -t "$THREADS" -q)")
  # shellcheck disable=SC2086
  ROWS+=("$(measure "awq q4g128a$tag" "$b" awq -m "$DIR/model.gguf" -o "$DIR/awq.gguf" --text "$DIR/calib.txt" \
    $AWQ_FLAGS -t "$THREADS" -q)")
done

python3 - "$MODEL_BYTES" "$PARAMS" "$JSON" "$LAYERS" "$DIM" "$FFN" "$THREADS" "$AWQ_FLAGS" "${ROWS[@]}" <<'EOF'
import json, sys
size, params, path, layers, dim, ffn, threads, awq_flags = sys.argv[1:9]
rows = [json.loads(r) for r in sys.argv[9:]]
mib = lambda k: k / 1024
print(f"{'run':<24} {'time s':>8} {'peak RSS MiB':>13} {'anon MiB':>9} {'file MiB':>9} {'RSS/model':>10} {'out MiB':>8}")
for r in rows:
    print(f"{r['run']:<24} {r['seconds']:>8.1f} {mib(r['peak_rss_kib']):>13.0f} {mib(r['peak_anon_kib']):>9.0f} "
          f"{mib(r['peak_file_kib']):>9.0f} {r['peak_rss_kib'] * 1024 / int(size):>10.3f} "
          f"{r['output_bytes'] / 2**20:>8.0f}")
print(f"model: {int(size) / 2**20:.0f} MiB F16, {int(params)} parameters")
with open(path, "w") as f:
    json.dump({"model": {"bytes": int(size), "parameters": int(params), "layers": int(layers), "dim": int(dim),
                         "ffn": int(ffn)}, "threads": int(threads), "awq_flags": awq_flags, "runs": rows}, f,
              indent=1)
print(f"wrote {path}")
EOF
