#!/usr/bin/env bash
# slimlm compress / eval / report on tiny synthetic models: a recipe run twice gives identical
# bytes (and equals running the steps by hand); a resumed recipe skips its finished steps
# (log lines, unchanged mtimes); bad recipes are one-line errors naming FILE:LINE with no
# output; the model card; eval --pp/--csv and peak memory; report writes PNGs and a page that
# links them.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

python3 tests/reference/make_tiny_model.py "$TMP/t.gguf" --layers 2 --dim 64 --type f32 >/dev/null
CAL=../shared/data/wikitext2-valid.txt
EVT=../shared/data/wikitext2-test.txt

"$BIN" compress --help >"$TMP/h" 2>&1
check "compress --help exits 0" test $? -eq 0
check "compress --help prints usage" grep -q "usage: slimlm compress" "$TMP/h"

# ---- quantize -> pack, twice: identical bytes, and the same as the commands by hand ----
printf '# quantize, then pack\nquantize --type q4_0\n\npack --codec auto  # smallest per segment\n' >"$TMP/r1.txt"
"$BIN" compress -m "$TMP/t.gguf" -o "$TMP/a.slm" --recipe "$TMP/r1.txt" -t 1 >"$TMP/a.out" 2>"$TMP/a.err"
check "compress run 1 exits 0 ($(tail -1 "$TMP/a.err"))" test $? -eq 0
"$BIN" compress -m "$TMP/t.gguf" -o "$TMP/b.slm" --recipe "$TMP/r1.txt" -t 1 -q >"$TMP/b.out" 2>"$TMP/b.err"
check "compress run 2 exits 0" test $? -eq 0
check "run twice: identical bytes" cmp -s "$TMP/a.slm" "$TMP/b.slm"
check "progress lines" grep -q '^\[step 2/2\] pack --codec auto \.\.\.$' "$TMP/a.err"
check "-q: only the step lines" test "$(grep -vc '^\[step\|^compress:' "$TMP/b.err")" -eq 0
check "work dir removed after success" test ! -e "$TMP/a.slm.work"
"$BIN" quantize -m "$TMP/t.gguf" -o "$TMP/h.gguf" --type q4_0 -t 1 -q >/dev/null 2>&1
"$BIN" pack "$TMP/h.gguf" "$TMP/h.slm" -q >/dev/null 2>&1
check "recipe output = quantize then pack by hand" cmp -s "$TMP/a.slm" "$TMP/h.slm"
"$BIN" unpack "$TMP/a.slm" "$TMP/a.gguf" >/dev/null 2>&1
check "output unpacks to the quantized model" cmp -s "$TMP/a.gguf" "$TMP/h.gguf"
"$BIN" run -m "$TMP/a.slm" -p "The capital" -n 4 --temp 0 -t 1 >/dev/null 2>&1
check "output runs" test $? -eq 0
# model card
C="$TMP/a.slm.md"
check "card exists" test -f "$C"
check "card: recipe" grep -qx 'quantize --type q4_0' "$C"
check "card: source SHA-256" grep -q "$(sha256sum "$TMP/t.gguf" | cut -c1-64)" "$C"
check "card: output SHA-256" grep -q "$(sha256sum "$TMP/a.slm" | cut -c1-64)" "$C"
check "card: step summary" grep -q 'quantized matrices: .* bits per weight' "$C"
check "card: how to run" grep -q 'slimlm run -m a.slm' "$C"
check "layers file: per-tensor errors" grep -qP '^1-quantize\t0\tattn_q\t0\.0[0-9]+$' "$TMP/a.slm.layers.tsv"

# ---- resume: kept intermediates, an extended recipe reuses the finished steps ----
cat >"$TMP/r2.txt" <<EOF
# prune, then AWQ, then weighted clustering
prune --sparsity 0.3 --samples 2 --text $CAL
awq --bits 4 --group 32 --samples 2 --text $CAL
cluster --weighted --k 16 --samples 2 --text $CAL
EOF
W="$TMP/w"
"$BIN" compress -m "$TMP/t.gguf" -o "$TMP/c.gguf" --recipe "$TMP/r2.txt" --work "$W" --keep-intermediate -t 1 -q \
  >/dev/null 2>"$TMP/c.err"
check "calibrated recipe exits 0 ($(tail -1 "$TMP/c.err"))" test $? -eq 0
check "three steps ran" test "$(grep -c ': done in ' "$TMP/c.err")" -eq 3
check "intermediates kept" test "$(ls "$W"/step-*.gguf | wc -l)" -eq 3
check "prune saved a calibration" test "$(ls "$W"/calib-1-*.bin 2>/dev/null | wc -l)" -eq 1
check "awq saved its own (needs rows)" test "$(ls "$W"/calib-2-*.bin 2>/dev/null | wc -l)" -eq 1
check "cluster loaded awq's calibration" test "$(ls "$W"/calib-3-*.bin 2>/dev/null | wc -l)" -eq 0
check "cluster log: no calibration run" test "$(grep -c 'calibration: ' "$W"/step-3-*.log)" -eq 0
stat -c '%n %Y %s' "$W"/step-* | sort >"$TMP/m1"
sleep 1
"$BIN" compress -m "$TMP/t.gguf" -o "$TMP/c2.gguf" --recipe "$TMP/r2.txt" --work "$W" --keep-intermediate -t 1 -q \
  >/dev/null 2>"$TMP/c2.err"
check "resume exits 0" test $? -eq 0
check "resume: all steps skipped" test "$(grep -c 'done earlier, skipped' "$TMP/c2.err")" -eq 3
check "resume: step 2 line" grep -q '^\[step 2/3\] awq: done earlier, skipped' "$TMP/c2.err"
stat -c '%n %Y %s' "$W"/step-* | sort >"$TMP/m2"
check "resume: step files untouched (mtimes)" cmp -s "$TMP/m1" "$TMP/m2"
check "resume: same output" cmp -s "$TMP/c.gguf" "$TMP/c2.gguf"
# a changed last line: steps 1-2 skipped, step 3 runs
sed '4s/.*/quantize --type q8_0/' "$TMP/r2.txt" >"$TMP/r3.txt"
"$BIN" compress -m "$TMP/t.gguf" -o "$TMP/d.gguf" --recipe "$TMP/r3.txt" --work "$W" --keep-intermediate -t 1 -q \
  >/dev/null 2>"$TMP/d.err"
check "changed recipe exits 0" test $? -eq 0
check "changed recipe: 2 skipped" test "$(grep -c 'done earlier, skipped' "$TMP/d.err")" -eq 2
check "changed recipe: step 3 ran" grep -q '^\[step 3/3\] quantize: done in' "$TMP/d.err"
# a damaged intermediate is not trusted; the steps after it are skipped only when their input
# (recorded by SHA-256) is the same again
f=$(ls "$W"/step-2-*.gguf); printf 'x' >>"$f"
"$BIN" compress -m "$TMP/t.gguf" -o "$TMP/d2.gguf" --recipe "$TMP/r3.txt" --work "$W" -t 1 -q >/dev/null 2>"$TMP/d2.err"
check "damaged step output is redone" grep -q '^\[step 2/3\] awq: done in' "$TMP/d2.err"
check "step 3 reads the same bytes again: skipped" grep -q '^\[step 3/3\] quantize: done earlier, skipped' "$TMP/d2.err"
check "same bytes as before" cmp -s "$TMP/d.gguf" "$TMP/d2.gguf"

# the card is the same for the same run (no timings or dates)
cp "$TMP/a.slm.md" "$TMP/card1.md"
"$BIN" compress -m "$TMP/t.gguf" -o "$TMP/a.slm" --recipe "$TMP/r1.txt" -t 1 -q >/dev/null 2>&1
check "card: same run, same card" cmp -s "$TMP/a.slm.md" "$TMP/card1.md"

# ---- distill: --teacher IN --student <previous output>; then run ----
printf 'quantize --type q8_0\ndistill --tokens 128 --seq 32 --batch 2 --data %s\n' "$CAL" >"$TMP/r5.txt"
"$BIN" compress -m "$TMP/t.gguf" --recipe "$TMP/r5.txt" --check --work "$TMP/w5" >"$TMP/plan" 2>/dev/null
check "plan: distill gets the teacher and the previous output" \
  grep -qE "^\[step 2/2\] line 2: distill --teacher $TMP/t.gguf --student $TMP/w5/step-1-quantize-[0-9a-f]{16}\.gguf -o " "$TMP/plan"
if "$BIN" distill --help >/dev/null 2>&1; then
  "$BIN" compress -m "$TMP/t.gguf" -o "$TMP/ds.gguf" --recipe "$TMP/r5.txt" -t 1 -q >/dev/null 2>"$TMP/ds.err"
  check "quantize -> distill exits 0 ($(tail -1 "$TMP/ds.err"))" test $? -eq 0
  "$BIN" run -m "$TMP/ds.gguf" -p "The capital" -n 4 --temp 0 -t 1 >/dev/null 2>&1
  check "distilled output runs" test $? -eq 0
fi

# ---- bad recipes: one line naming FILE:LINE, exit 1, nothing written ----
bad_recipe() { # NAME TEXT EXPECTED-FRAGMENT
  printf "$2" >"$TMP/$1.txt"
  expect_error "$1" "$BIN" compress -m "$TMP/t.gguf" -o "$TMP/$1.gguf" --recipe "$TMP/$1.txt" -t 1
  check "$1: message '$3'" grep -qF "$3" "$TMP/e"
  check "$1: no output" test ! -e "$TMP/$1.gguf" -a ! -e "$TMP/$1.gguf.work" -a ! -e "$TMP/$1.gguf.md"
}
bad_recipe unknown_step '# x\nquantize --type q4_0\nsharpen --more\n' "unknown_step.txt:3: unknown step 'sharpen'"
bad_recipe bad_value 'quantize --type q4_0\n\nawq --bits 5\n' "bad_value.txt:3: awq --bits: '5' is not one of"
bad_recipe bad_flag 'awq --bitz 4\n' "bad_flag.txt:1: awq: unknown flag '--bitz'"
bad_recipe owned_flag 'quantize --type q4_0 -o x.gguf\n' "owned_flag.txt:1: quantize: -o is set by"
"$BIN" compress -m "$TMP/t.gguf" -o "$TMP/x.gguf" --recipe "$TMP/nonexistent.txt" >/dev/null 2>"$TMP/e"
check "missing recipe file: exit 1" test $? -eq 1

# ---- eval over several models: --pp, --tg, peak memory, CSV; then the report ----
"$BIN" quantize -m "$TMP/t.gguf" -o "$TMP/q8.gguf" --type q8_0 -t 1 -q >/dev/null 2>&1
"$BIN" eval "$TMP/h.gguf" "$TMP/q8.gguf" -m "$TMP/c.gguf" --base "$TMP/t.gguf" -f "$EVT" --ctx 128 --chunks 1 \
  --pp 32 --tg 8 --no-cache -t 1 --json "$TMP/e.json" --csv "$TMP/e.csv" >"$TMP/ev.out" 2>"$TMP/ev.err"
check "eval exits 0 ($(tail -1 "$TMP/ev.err"))" test $? -eq 0
check "eval table has pp, tg and peak columns" grep -qE 'pp32 t/s +tg8 t/s +peak MiB' "$TMP/ev.out"
check "csv: header + 4 rows" test "$(wc -l <"$TMP/e.csv")" -eq 5
python3 - "$TMP/e.json" "$TMP/e.csv" >"$TMP/py" 2>&1 <<'PY'
import csv, json, sys
j = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
m = j["models"]
assert j["pp_tokens"] == 32 and len(m) == 4 and len(rows) == 4, (j["pp_tokens"], len(m), len(rows))
for a, b in zip(m, rows):
    assert a["name"] == b["name"]
    for k in ("pp_tokens_per_s", "tg_tokens_per_s", "peak_rss_mib", "peak_delta_mib"):
        assert a[k] is not None and a[k] > 0, (a["name"], k, a[k])
        assert abs(float(b[k]) - a[k]) <= 0.01, (k, b[k], a[k])
    assert a["peak_delta_mib"] <= a["peak_rss_mib"]
    assert abs(float(b["bpw"]) - a["bpw"]) < 1e-5
    if not a["is_base"]:
        assert a["kl_mean"] is not None and abs(float(b["kl_mean"]) - a["kl_mean"]) < 1e-7
print("ok")
PY
check "eval JSON and CSV agree, every row has pp, tg and peak memory ($(tail -1 "$TMP/py"))" grep -qx ok "$TMP/py"

if command -v "${GNUPLOT:-gnuplot}" >/dev/null 2>&1; then
  "$BIN" report "$TMP/e.json" -o "$TMP/rep" --layers "$TMP/c.gguf.layers.tsv" >/dev/null 2>"$TMP/rep.err"
  check "report exits 0 ($(tail -1 "$TMP/rep.err"))" test $? -eq 0
  for p in kl_bpw ppl_size speed_size layers-1-prune layers-2-awq layers-3-cluster; do
    check "report: $p.png is a PNG" test "$(head -c 8 "$TMP/rep/$p.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a
    check "report: index.html links $p.png" grep -q "src=\"$p.png\"" "$TMP/rep/index.html"
  done
  check "report: no network references" test "$(grep -c 'http://\|https://' "$TMP/rep/index.html")" -eq 0
  # the Pareto frontier: q4_0 (fewest bits) is on it; the frontier file holds exactly the
  # models no other model beats in both bits and KL (computed here from the JSON)
  python3 - "$TMP/e.json" "$TMP/rep/kl_bpw_pareto.dat" >"$TMP/par" 2>&1 <<'PY'
import json, sys
m = [x for x in json.load(open(sys.argv[1]))["models"] if not x["is_base"]]
front = sorted(a["name"] for a in m if not any(
    b is not a and b["bpw"] <= a["bpw"] and b["kl_mean"] <= a["kl_mean"] and (b["bpw"] < a["bpw"] or b["kl_mean"] < a["kl_mean"]) for b in m))
got = sorted(l.split('"')[1] for l in open(sys.argv[2]) if not l.startswith("#"))
assert front == got, (front, got)
print("ok")
PY
  check "report: Pareto frontier ($(tail -1 "$TMP/par"))" grep -qx ok "$TMP/par"
  expect_error "report: a file that is not eval JSON" "$BIN" report "$TMP/r1.txt" -o "$TMP/rep2"
else
  bad "gnuplot not installed (apt-get install gnuplot-nox): report not tested"
fi

summary e2e_compress
