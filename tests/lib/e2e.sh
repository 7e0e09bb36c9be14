# Shared helpers for the end-to-end shell tests (sourced, not run).
BIN=${SLIMLM_BIN:-build/slimlm}
PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*" >&2; }
# check DESCRIPTION COMMAND...: the command must succeed
check() { local d=$1; shift; if "$@"; then ok; else bad "$d"; fi; }
# expect_error DESCRIPTION COMMAND...: non-zero exit, exactly one line on stderr containing "error"
expect_error() {
  local d=$1; shift
  "$@" >"$TMP/o" 2>"$TMP/e" </dev/null
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(wc -l <"$TMP/e")" -eq 1 ] && grep -q "error" "$TMP/e"; then ok
  else bad "$d (exit $rc): $(head -c 300 "$TMP/e")"; fi
}
summary() { echo "$1: $PASS passed, $FAIL failed"; [ $FAIL -eq 0 ]; }
if [ ! -x "$BIN" ]; then echo "FAIL: $BIN not built (run make)"; echo "e2e: 0 passed, 1 failed"; exit 1; fi
MODEL=${SLIMLM_MODEL:-}
if [ -z "$MODEL" ]; then MODEL=$(scripts/fetch-model.sh 2>/dev/null) || true; fi
if [ ! -f "$MODEL" ]; then echo "FAIL: model fixture missing: run scripts/fetch-model.sh"; echo "e2e: 0 passed, 1 failed"; exit 1; fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
