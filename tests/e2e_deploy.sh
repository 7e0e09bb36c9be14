#!/usr/bin/env bash
# Replicated serving (deploy/replicas.sh): 2 `slimlm serve` replicas (-t 1) behind nginx on
# loopback, driven by tests/deploy_client.py:
#  - a stream passes through nginx event by event and equals the whole answer;
#  - prompt-prefix affinity: groups of requests sharing a long prefix each go to one replica;
#    the replicas' prefix-cache counters give a higher hit rate than the same requests sent
#    round robin (a second deployment with --no-affinity);
#  - 40 completions from 4 clients, one replica SIGKILLed after 12 answers: every request
#    gets the greedy reference text or a clean 502/503/504 JSON error, requests after the kill
#    all succeed on the survivor, both replicas' /metrics show the requests they served;
#  - stop: no process of the deployment is left.
# Fails (does not skip) when nginx is missing: scripts/install-deps.sh installs it.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib/e2e.sh

RUN=$TMP/run
cleanup() {
  [ -d "$RUN" ] && deploy/replicas.sh stop --run-dir "$RUN" >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

if ! command -v nginx >/dev/null 2>&1; then
  echo "FAIL: nginx not found: run scripts/install-deps.sh (nginx-light, libnginx-mod-http-js)"
  echo "e2e_deploy: 0 passed, 1 failed"
  exit 1
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# deploy NAME FLAGS...: starts the deployment in $RUN; sets FRONT and REPS (--replica URL=PID ...)
deploy() {
  local name=$1; shift
  FRONT=$(deploy/replicas.sh --replicas 2 --port "$(free_port)" --model "$MODEL" --threads 1 \
    --run-dir "$RUN" --bin "$BIN" "$@" -c 512 --max-seqs 8 2>"$TMP/$name.err")
  local rc=$?
  check "$name: replicas.sh starts (exit $rc: $(head -c 300 "$TMP/$name.err"))" test $rc -eq 0
  check "$name: replicas.sh prints the front URL ($FRONT)" bash -c "[[ '$FRONT' =~ ^http://127\.0\.0\.1:[0-9]+$ ]]"
  REPS=()
  local i
  for i in 0 1; do
    [ -f "$RUN/replica-$i.port" ] && REPS+=(--replica "http://127.0.0.1:$(cat "$RUN/replica-$i.port")=$(cat "$RUN/replica-$i.pid")")
  done
  check "$name: two replicas with pid and port files" test ${#REPS[@]} -eq 4
  [ $rc -eq 0 ] && [ ${#REPS[@]} -eq 4 ]
}

# client NAME ARGS...: runs deploy_client.py, adds its counts, keeps its output in $TMP/NAME.out
client() {
  local name=$1; shift
  python3 tests/deploy_client.py "$@" >"$TMP/$name.out" 2>&1
  sed "s/^/  $name: /" "$TMP/$name.out"
  local line p f
  line=$(grep -E '^deploy_client: [0-9]+ passed, [0-9]+ failed' "$TMP/$name.out" | tail -n 1)
  p=$(echo "$line" | sed -nE 's/^deploy_client: ([0-9]+) passed.*/\1/p')
  f=$(echo "$line" | sed -nE 's/.* ([0-9]+) failed$/\1/p')
  if [ -z "$line" ]; then bad "$name: deploy_client.py did not finish"; else PASS=$((PASS + p)); FAIL=$((FAIL + f)); fi
}

# stopped NAME: replicas.sh stop succeeds and leaves no process of the deployment
stopped() {
  local name=$1 pids p left=""
  pids=$(cat "$RUN"/replica-*.pid "$RUN"/nginx/nginx.pid 2>/dev/null)
  deploy/replicas.sh stop --run-dir "$RUN" 2>"$TMP/$name.stop"
  check "$name: replicas.sh stop exits 0 ($(head -c 300 "$TMP/$name.stop"))" test $? -eq 0
  for p in $pids; do
    if kill -0 "$p" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' "/proc/$p/stat" 2>/dev/null; then left+=" $p"; fi
  done
  check "$name: no process left after stop (${left:-none})" test -z "$left"
  check "$name: replica logs have no sanitizer reports" bash -c "! grep -q -E 'Sanitizer|runtime error' '$RUN'/replica-*.log"
}

# rate FILE: "HITS REQUESTS CACHED PROMPT" from the last line of a prefix run
rate() { sed -nE 's/^prefix_hits ([0-9]+) requests ([0-9]+) cached_tokens ([0-9]+) prompt_tokens ([0-9]+)$/\1 \2 \3 \4/p' "$1"; }

# 1. with affinity: stream, prefix groups, load with a kill
if deploy affinity; then
  client stream stream --front "$FRONT" "${REPS[@]}"
  client prefix_affinity prefix --affinity --front "$FRONT" "${REPS[@]}"
  client load load --front "$FRONT" "${REPS[@]}" --requests 40 --clients 4 --max-tokens 8 --kill-after 12
  echo "  nginx access log: $(grep -c -E 'upstream_status=[0-9]{3}, ' "$RUN/nginx/access.log") requests retried on another replica, $(grep -c '" 502 ' "$RUN/nginx/access.log") answered 502"
fi
stopped affinity

# 2. round robin: the same prefix groups on fresh replicas
if deploy round_robin --no-affinity; then
  check "round_robin: the nginx config has no hash" bash -c "! grep -q '^ *hash ' '$RUN/nginx/nginx.conf'"
  client prefix_rr prefix --front "$FRONT" "${REPS[@]}"
  # a replica that refuses connections: its requests are retried on the other one
  kill -KILL "$(cat "$RUN/replica-1.pid")"
  codes=""
  for i in 1 2 3 4; do
    codes+=$(curl -s -m 60 -o /dev/null -w ' %{http_code}' "$FRONT/v1/completions" \
      -H 'Content-Type: application/json' -d '{"prompt": "Hello", "max_tokens": 2, "temperature": 0}')
  done
  check "round_robin: with a replica down, 4 of 4 requests answered 200 (got$codes)" test "$codes" = " 200 200 200 200"
  check "round_robin: nginx retried the refused connection on the survivor" \
    grep -q -E 'upstream_status=502, 200' "$RUN/nginx/access.log"
fi
stopped round_robin

A=$(rate "$TMP/prefix_affinity.out" 2>/dev/null) R=$(rate "$TMP/prefix_rr.out" 2>/dev/null)
if [ -n "$A" ] && [ -n "$R" ]; then
  read -r ah an ac ap <<<"$A"
  read -r rh rn rc rp <<<"$R"
  echo "prefix cache, with affinity: $ah of $an requests hit, $ac of $ap prompt tokens cached"
  echo "prefix cache, round robin:   $rh of $rn requests hit, $rc of $rp prompt tokens cached"
  check "affinity hits more requests than round robin ($ah/$an vs $rh/$rn)" test $((ah * rn)) -gt $((rh * an))
  check "affinity caches more prompt tokens than round robin ($ac/$ap vs $rc/$rp)" test $((ac * rp)) -gt $((rc * ap))
else
  bad "prefix hit counts missing"
fi
summary e2e_deploy
