#!/usr/bin/env bash
# The test suite from a fresh clone: install dependencies (toolchain, clang, numpy, gguf),
# fetch the model fixture, build, run all tests, then the fast tests and the end-to-end
# generation under ASan+UBSan, and the fuzzers of the GGUF parser and of the model loader for
# FUZZ_SECONDS each (default 60).
# The last line sums every stage: "all: N passed, M failed".
# Usage: scripts/test.sh [--quick]   (--quick: skip the sanitizer and fuzz stages)
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
scripts/install-deps.sh || { echo "error: installing dependencies failed" >&2; exit 1; }
SLIMLM_MODEL=${SLIMLM_MODEL:-$(scripts/fetch-model.sh)} || { echo "error: fetching the model failed" >&2; exit 1; }
export SLIMLM_MODEL
jobs=$(nproc)
mkdir -p build
make -s -j"$jobs" all || { echo "error: build failed" >&2; exit 1; }

passed=0 failed=0
tally() { # read a stage's "total: N passed, M failed" from its log; a stage without one failed
  local log=$1 line
  line=$(grep -E '^total: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
  passed=$((passed + $(sed -E 's/^total: ([0-9]+) passed.*/\1/' <<<"$line")))
  failed=$((failed + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")))
}

echo "== tests"
make -s test 2>&1 | tee build/stage-test.log
tally build/stage-test.log
if [ $quick = 0 ]; then
  echo "== tests under ASan+UBSan"
  make -s -j"$jobs" asan 2>&1 | tee build/stage-asan.log
  tally build/stage-asan.log
  echo "== fuzzing the GGUF parser and the model loader for ${FUZZ_SECONDS:-60}s each"
  if make -s -j"$jobs" fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}" >build/fuzz.log 2>&1; then
    grep -E '^Done [0-9]+ runs' build/fuzz.log | sed 's/^/  /'
    passed=$((passed + 1))
  else
    tail -n 30 build/fuzz.log
    echo "FAIL fuzz_gguf / fuzz_model -- log: build/fuzz.log"
    failed=$((failed + 1))
  fi
fi
echo "all: $passed passed, $failed failed"
[ $failed -eq 0 ]
