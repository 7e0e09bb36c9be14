#!/usr/bin/env bash
# `slimlm bench`: a quick pp/tg run on the real model writes a complete report and JSON, the
# memory bandwidth probe gives numbers, and bad flags give one error line. No timing asserts.
# asan: yes
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

"$BIN" bench --help >"$TMP/h" 2>&1
check "bench --help exits 0" test $? -eq 0
check "bench --help prints usage" grep -q "usage: slimlm bench" "$TMP/h"
check "bench --help defines pp" grep -q "ppN  prompt processing" "$TMP/h"
check "bench --help defines tg" grep -q "tgN  token generation" "$TMP/h"
"$BIN" --help >"$TMP/h" 2>&1
check "bench is listed in slimlm --help" grep -q "^  bench " "$TMP/h"

"$BIN" bench -m "$MODEL" -p 16 -n 4 -r 2 -t 1 --membw-mib 16 --membw-passes 2 --json "$TMP/b.json" \
  >"$TMP/out" 2>"$TMP/err"
check "bench exits 0" test $? -eq 0
cat "$TMP/out"
check "progress lines on stderr" grep -q "^bench: pp16, 1 thread: run 2/2" "$TMP/err"
check "table header" grep -qE "^\| model +\| +size \| +bpw \| threads \| test +\| t/s \(median\) \| +min \| +max \|" "$TMP/out"
check "pp16 row" grep -qE "^\| llama .*\| +1 \| pp16 " "$TMP/out"
check "tg4 row" grep -qE "^\| llama .*\| +1 \| tg4 " "$TMP/out"
check "kernel set and KV type reported" grep -qE "^kernels: [a-z0-9]+ \| KV cache: f16" "$TMP/out"
check "peak RSS reported" grep -q "^peak RSS: " "$TMP/out"
check "decode bandwidth reported" grep -q "% of triad" "$TMP/out"
check "no temporary files left beside the JSON" test "$(ls "$TMP" | grep -c 'b.json')" -eq 1

cat >"$TMP/check.py" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
fails = []
def need(cond, what):
    if not cond: fails.append(what)
m = d["model"]
need(4.0 < m["bpw"] < 6.0, "bpw %r not in (4, 6)" % m["bpw"])
need(m["size_bytes"] > 0 and m["n_params"] > 0, "size and weights are positive")
need(m["architecture"] == "llama" and m["tied_output"] is True, "llama with a tied output head")
need({t["type"] for t in m["matrices"]} == {"q4_1", "q8_0"}, "matrix dtypes q4_1 and q8_0: %r" % m["matrices"])
need(sum(t["count"] for t in m["matrices"]) == 211, "210 layer matrices + the embedding table")
need(0 < m["decode_bytes_per_token"] <= m["size_bytes"], "decode bytes within the file's tensor bytes")
need(d["kv_type"] == "f16" and d["reps"] == 2 and d["peak_rss_bytes"] > 0, "kv type, reps, peak RSS")
need(isinstance(d["kernel_isa"], str) and d["kernel_isa"], "kernel isa named")
rs = d["results"]
for kind, test in (("pp", "pp16"), ("tg", "tg4")):
    r = [x for x in rs if x["kind"] == kind]
    need(len(r) == 1, "one %s entry" % kind)
    if r:
        r = r[0]
        need(r["test"] == test and r["threads"] == 1, "%s test name and threads" % kind)
        need(r["tps_median"] > 0 and 0 < r["tps_min"] <= r["tps_median"] <= r["tps_max"], "%s t/s ordering" % kind)
        need(len(r["samples"]) == 2 and all(s > 0 for s in r["samples"]), "%s has 2 positive samples" % kind)
        need(r["tps_stddev"] >= 0, "%s stddev" % kind)
mb = d["membw"]
need(mb is not None and mb["array_bytes"] == 16 << 20, "membw ran with 16 MiB arrays")
if mb:
    need([x["threads"] for x in mb["results"]] == [1], "membw with 1 thread")
    need(all(x["copy_gbs"] > 0 and x["triad_gbs"] > 0 for x in mb["results"]), "membw GB/s positive")
db = d["decode_bandwidth"]
need(len(db) == 1 and db[0]["weights_gbs"] > 0 and db[0]["fraction_of_triad"] > 0, "decode bandwidth fraction")
for f in fails: print("FAIL: json:", f)
sys.exit(1 if fails else 0)
EOF
check "JSON report is complete and plausible" python3 "$TMP/check.py" "$TMP/b.json"

"$BIN" bench -m "$MODEL" -p 0 -n 2 -r 1 -t 1,2 --no-membw --json "$TMP/c.json" >"$TMP/out2" 2>&1
check "tg only, two thread counts, no probe: exits 0" test $? -eq 0
check "two tg entries, no pp, membw null" python3 -c "
import json, sys
d = json.load(open('$TMP/c.json'))
sys.exit(not ([r['threads'] for r in d['results']] == [1, 2] and all(r['kind'] == 'tg' for r in d['results'])
              and d['membw'] is None and d['decode_bandwidth'][0]['fraction_of_triad'] is None))"

expect_error "unknown flag" "$BIN" bench -m "$MODEL" --bogus
expect_error "missing value" "$BIN" bench -m "$MODEL" -p
expect_error "negative -n" "$BIN" bench -m "$MODEL" -n -1
expect_error "-r 0" "$BIN" bench -m "$MODEL" -r 0
expect_error "bad thread list" "$BIN" bench -m "$MODEL" -t 1,,2
expect_error "trailing comma in thread list" "$BIN" bench -m "$MODEL" -t 1,
expect_error "thread count not a number" "$BIN" bench -m "$MODEL" -t two
expect_error "nothing to run" "$BIN" bench -m "$MODEL" -p 0 -n 0
expect_error "bad --kv-type" "$BIN" bench -m "$MODEL" --kv-type q4_0
expect_error "bad --isa" "$BIN" bench -m "$MODEL" --isa sse9
expect_error "bad --membw-mib" "$BIN" bench -m "$MODEL" --membw-mib 0
expect_error "missing model" "$BIN" bench -m "$TMP/nope.gguf"
expect_error "JSON into a missing directory fails before benchmarking" \
  "$BIN" bench -m "$MODEL" -p 4 -n 1 -r 1 --no-membw --json "$TMP/no/such/dir/b.json"
summary e2e_bench
