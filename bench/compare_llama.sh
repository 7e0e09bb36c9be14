#!/usr/bin/env bash
# pp512 / tg128 of slimlm and llama.cpp's llama-bench on the same files, threads and sitting,
# interleaved per model; prints a markdown table with the ratios and writes JSON.
# Usage: bench/compare_llama.sh LLAMA_BIN_DIR OUT.json MODEL.gguf [MODEL.gguf ...]
#   env: THREADS (default "1,2"), REPS (default 5), PP (512), TG (128)
# llama.cpp is built outside this repository (see docs/BENCHMARKS.md).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 LLAMA_BIN_DIR OUT.json MODEL.gguf [MODEL.gguf ...]" >&2; exit 2; }
lbin=$1 out=$2; shift 2
threads=${THREADS:-1,2} reps=${REPS:-5} pp=${PP:-512} tg=${TG:-128}
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=0
for m in "$@"; do
  i=$((i + 1))
  echo "[$i/$#] $m: slimlm" >&2
  "$here/build/slimlm" bench -m "$m" -p "$pp" -n "$tg" -t "$threads" -r "$reps" --no-membw --json "$tmp/s$i.json" >/dev/null 2>"$tmp/s$i.log"
  echo "[$i/$#] $m: llama-bench" >&2
  "$lbin/llama-bench" -m "$m" -p "$pp" -n "$tg" -t "$threads" -r "$reps" -o json >"$tmp/l$i.json" 2>/dev/null
done
python3 - "$tmp" "$out" "$#" <<'PY'
import json, os, sys
tmp, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
for i in range(1, n + 1):
    s = json.load(open(os.path.join(tmp, f"s{i}.json")))
    l = json.load(open(os.path.join(tmp, f"l{i}.json")))
    name = os.path.basename(s["model"]["file"])
    for r in s["results"]:
        kind, nt, th = r["kind"], r["n_tokens"], r["threads"]
        match = [x for x in l if x["n_threads"] == th and
                 ((kind == "pp" and x["n_prompt"] == nt and x["n_gen"] == 0) or
                  (kind == "tg" and x["n_gen"] == nt and x["n_prompt"] == 0))]
        ll = match[0]["avg_ts"] if match else None
        lsd = match[0]["stddev_ts"] if match else None
        rows.append({"model": name, "bpw": s["model"]["bpw"], "threads": th, "test": f"{kind}{nt}",
                     "slimlm_tps": r["tps_median"], "slimlm_min": r["tps_min"], "slimlm_max": r["tps_max"],
                     "llama_tps": ll, "llama_sd": lsd, "ratio": (r["tps_median"] / ll) if ll else None,
                     "isa": s["kernel_isa"]})
print("| model | bpw | threads | test | slimlm t/s (median, min-max) | llama.cpp t/s (mean +/- sd) | slimlm / llama.cpp |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    ll = f"{r['llama_tps']:.1f} +/- {r['llama_sd']:.1f}" if r["llama_tps"] else "-"
    ra = f"{r['ratio']:.2f}" if r["ratio"] else "-"
    print(f"| {r['model']} | {r['bpw']:.2f} | {r['threads']} | {r['test']} | "
          f"{r['slimlm_tps']:.1f} ({r['slimlm_min']:.1f}-{r['slimlm_max']:.1f}) | {ll} | {ra} |")
json.dump(rows, open(out, "w"), indent=1)
PY
