#!/usr/bin/env bash
# slimlm serve: the OpenAI-compatible server on a free loopback port, driven by
# tests/serve_client.py (greedy text equal to `slimlm run --temp 0`, streams equal to whole
# answers, chat, seeded parallel samples, stop strings, logprobs, concurrent requests equal to
# their solo results, client disconnects, malformed requests, /metrics), a second server with
# one slot and a queue of one for 429, and SIGTERM during a stream: exit 0 within seconds.
set -u
cd "$(dirname "$0")/.."
. tests/lib/e2e.sh

CTX=256
. tests/lib/serve.sh

"$BIN" serve --help >"$TMP/h" 2>&1
check "serve --help exits 0" test $? -eq 0
check "serve --help prints usage" grep -q "usage: slimlm serve" "$TMP/h"
expect_error "serve: unknown option" "$BIN" serve --bogus
expect_error "serve: bad port" "$BIN" serve -m "$MODEL" --port 70000
expect_error "serve: bad host" "$BIN" serve -m "$MODEL" --host not-an-address --port 0
expect_error "serve: missing model" "$BIN" serve -m "$TMP/none.gguf" --port 0

start_server "$TMP/s1.err" -c $CTX -t 2 --max-seqs 16
check "server 1 prints its port ($(head -c 300 "$TMP/s1.err"))" test -n "$SPORT"
S1PID=$SPID S1PORT=$SPORT
start_server "$TMP/s2.err" -c $CTX -t 1 --max-seqs 1 --max-queue 1
check "server 2 prints its port ($(head -c 300 "$TMP/s2.err"))" test -n "$SPORT"
S2PID=$SPID S2PORT=$SPORT
# a KV pool of 96 positions (6 blocks) for 8 concurrent requests of ~30 positions each
start_server "$TMP/s3.err" -c 96 -t 1 --max-seqs 8 --kv-tokens 96 --no-prefix-cache
check "server 3 prints its port ($(head -c 300 "$TMP/s3.err"))" test -n "$SPORT"
S3PORT=$SPORT

if [ -n "$S1PORT" ] && [ -n "$S2PORT" ]; then
  python3 tests/serve_client.py --url "http://127.0.0.1:$S1PORT" --busy-url "http://127.0.0.1:$S2PORT" \
    ${S3PORT:+--preempt-url "http://127.0.0.1:$S3PORT"} \
    --bin "$BIN" --model "$MODEL" --ctx $CTX >"$TMP/client.txt" 2>&1
  cat "$TMP/client.txt"
  line=$(grep -E '^serve_client: [0-9]+ passed, [0-9]+ failed' "$TMP/client.txt" | tail -n 1)
  p=$(echo "$line" | sed -nE 's/^serve_client: ([0-9]+) passed.*/\1/p')
  f=$(echo "$line" | sed -nE 's/.* ([0-9]+) failed$/\1/p')
  if [ -z "$line" ]; then bad "serve_client.py did not finish"; else PASS=$((PASS + p)); FAIL=$((FAIL + f)); fi
fi

# SIGTERM while a stream runs: the stream ends, the server exits 0 within a few seconds.
stop_during_stream() { # PID PORT NAME
  local pid=$1 port=$2 name=$3
  python3 - "$port" >"$TMP/$name.stream" 2>&1 <<'PY' &
import http.client, json, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
body = {"prompt": "Tell me a long story.", "max_tokens": 200, "temperature": 0, "ignore_eos": True, "stream": True}
c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
r = c.getresponse()
n = 0
t0 = time.time()
try:
    while r.readline():
        n += 1
    print("ended", n, round(time.time() - t0, 1))
except Exception as e:
    print("ended", n, round(time.time() - t0, 1), type(e).__name__)
PY
  local cpid=$!
  sleep 1.5
  kill -TERM "$pid"
  local rc=timeout
  for _ in $(seq 1 50); do
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; rc=$?; break; fi
    sleep 0.1
  done
  check "$name: SIGTERM exits 0 within 5 s (got $rc)" test "$rc" = 0
  for _ in $(seq 1 50); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
  check "$name: the running stream ended ($(cat "$TMP/$name.stream"))" grep -q "^ended" "$TMP/$name.stream"
  kill -KILL "$cpid" 2>/dev/null
}
[ -n "$S1PORT" ] && stop_during_stream "$S1PID" "$S1PORT" server1
[ -n "$S2PORT" ] && stop_during_stream "$S2PID" "$S2PORT" server2
check "server log has no sanitizer reports" bash -c "! grep -q -E 'Sanitizer|runtime error' '$TMP/s1.err' '$TMP/s2.err'"
summary e2e_serve
