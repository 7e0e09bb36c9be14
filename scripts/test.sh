#!/usr/bin/env bash
# The test suite from a fresh clone: install dependencies (toolchain, clang, numpy, gguf),
# fetch the model fixture, build, run all tests, then the fast tests under ASan+UBSan and the
# GGUF parser fuzzer for a bounded time (FUZZ_SECONDS, default 60).
# Usage: scripts/test.sh [--quick]   (--quick: skip the sanitizer and fuzz stages)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
scripts/install-deps.sh
export SLIMLM_MODEL=${SLIMLM_MODEL:-$(scripts/fetch-model.sh)}
jobs=$(nproc)
make -j"$jobs" all >/dev/null
status=0
echo "== tests"
make -s test || status=1
if [ $quick = 0 ]; then
  echo "== tests under ASan+UBSan"
  make -s -j"$jobs" asan || status=1
  echo "== fuzzing the GGUF parser for ${FUZZ_SECONDS:-60}s"
  if make -s fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}" >build/fuzz.log 2>&1; then
    grep -E '^Done|stat::number_of_executed_units' build/fuzz.log | tail -n 1 || true
    echo "fuzz: 1 passed, 0 failed"
  else
    tail -n 30 build/fuzz.log
    echo "fuzz: 0 passed, 1 failed"
    status=1
  fi
fi
exit $status
