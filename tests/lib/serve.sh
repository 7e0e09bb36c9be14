# serve.sh - start `slimlm serve` processes for end-to-end tests (source after tests/lib/e2e.sh).
# Every server started is killed when the script exits.

PIDS=()
serve_cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$TMP"; }
trap serve_cleanup EXIT

# start_server LOG ARGS...: `slimlm serve -m $MODEL --port 0 ARGS` in the background; sets SPID
# and SPORT (SPORT empty and status 1 when it did not come up within 10 s).
start_server() {
  local log=$1; shift
  : >"$log"
  "$BIN" serve -m "$MODEL" --port 0 "$@" 2>"$log" &
  SPID=$!
  PIDS+=("$SPID")
  SPORT=""
  for _ in $(seq 1 100); do
    SPORT=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$log")
    [ -n "$SPORT" ] && return 0
    kill -0 "$SPID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
