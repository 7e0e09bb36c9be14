#!/usr/bin/env bash
# Run the test suite and print one summary line: "total: N passed, M failed".
#   tests/run.sh [--fast] [--asan]
# Runs every $BUILD/tests/test_* binary, then (unless --fast) every tests/oracle_*.py and
# tests/e2e_*.sh; with --asan also tests/e2e_*.sh marked "# asan: yes".
# Each test prints "<name>: N passed, M failed" as its last such line; a test that exits
# non-zero without reporting a failure counts as one failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
fast=0 asan=0
for a in "$@"; do
  case $a in
    --fast) fast=1 ;;
    --asan) asan=1 ;;
    *) echo "usage: tests/run.sh [--fast] [--asan]" >&2; exit 2 ;;
  esac
done
export SLIMLM_BIN=$BUILD/slimlm
if [ $asan = 1 ]; then export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}; fi

passed=0 failed=0
logdir=$BUILD/test-logs
mkdir -p "$logdir"
run_one() { # name, command...
  local name=$1; shift
  local log=$logdir/$name.log
  local t0=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  local line p f
  line=$(grep -E '^([A-Za-z0-9_.-]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/.*([^0-9]|^)([0-9]+) passed.*/\2/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  else
    p=0 f=0
  fi
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then
    echo "FAIL $name ($p passed, $f failed, exit $rc, $((SECONDS - t0))s) -- log: $log"
    grep -E 'FAIL|error|ERROR|Sanitizer|runtime error' "$log" | head -n 20 | sed 's/^/    /'
  else
    echo "ok   $name ($p passed, $((SECONDS - t0))s)"
  fi
}

for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t"
done
if [ $fast = 0 ]; then
  for t in tests/oracle_*.py; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t" .py)" python3 "$t"
  done
fi
for t in tests/e2e_*.sh; do
  [ -f "$t" ] || continue
  if [ $fast = 1 ] && ! { [ $asan = 1 ] && grep -q '^# asan: yes' "$t"; }; then continue; fi
  run_one "$(basename "$t" .sh)" bash "$t"
done
echo "total: $passed passed, $failed failed"
[ $failed -eq 0 ]
