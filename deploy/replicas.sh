#!/usr/bin/env bash
# Replicated serving: N `slimlm serve` replicas on loopback ports behind one nginx.
#
# usage: deploy/replicas.sh [start] --run-dir D [--replicas N] [--port P] [--model M]
#                           [--threads T] [--bin B] [--max-body BYTES] [--no-affinity]
#                           [SERVE FLAGS...] [-- SERVE FLAGS...]
#        deploy/replicas.sh stop --run-dir D
#
# start: each replica binds a free loopback port (serve --port 0) and is waited for until its
# /health answers; then nginx (an ordinary process, not the system service: its prefix, config,
# pid, logs and temp files live in D/nginx) listens on 127.0.0.1:P and spreads requests over
# the replicas (prompt-prefix affinity through deploy/affinity.js, or round robin with
# --no-affinity). Prints the front URL on stdout. Options it does not know go to `slimlm serve`.
# stop: nginx quits gracefully, replicas get SIGTERM (SIGKILL after 15 s); pid files removed.
#
# Defaults: 2 replicas, front port 8080, the fetched default model, threads = CPUs / replicas,
# --bin build/slimlm ($SLIMLM_BIN), --max-body 1048576 (given to serve and to nginx).
# Files in D: replica-I.pid, replica-I.port, replica-I.log (I = 0..N-1), nginx/nginx.conf,
# nginx/nginx.pid, nginx/error.log, nginx/access.log.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
JS_MODULE=${SLIMLM_NGINX_JS_MODULE:-/usr/lib/nginx/modules/ngx_http_js_module.so}

die() { echo "replicas.sh: error: $*" >&2; exit 1; }
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

# alive PID: the process exists and is not a zombie
alive() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  [ "$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# is_ours PID WORD: PID is alive and its command line contains WORD (guards against pid reuse)
is_ours() {
  local pid=$1 word=$2
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$word"
}

# wait_gone PID SECONDS: true once PID has exited
wait_gone() {
  local pid=$1 n=$(($2 * 10))
  while [ $n -gt 0 ]; do
    alive "$pid" || return 0
    sleep 0.1
    n=$((n - 1))
  done
  ! alive "$pid"
}

# http_ok URL: a 200 answer within 2 s
http_ok() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null)" = 200 ]; }

stop_all() {
  local dir=$1 pid f
  if [ -f "$dir/nginx/nginx.pid" ]; then
    pid=$(cat "$dir/nginx/nginx.pid" 2>/dev/null)
    if is_ours "$pid" nginx; then
      kill -QUIT "$pid" 2>/dev/null
      wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$dir/nginx/nginx.pid"
  fi
  for f in "$dir"/replica-*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null)
    is_ours "$pid" serve && kill -TERM "$pid" 2>/dev/null
  done
  for f in "$dir"/replica-*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null)
    if is_ours "$pid" serve; then
      wait_gone "$pid" 15 || kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$f"
  done
}

cmd=start
case "${1:-}" in
  start | stop) cmd=$1; shift ;;
  -h | --help) usage; exit 0 ;;
esac

N=2 PORT=8080 MODEL="" THREADS="" RUN_DIR="" BIN=${SLIMLM_BIN:-$ROOT/build/slimlm}
MAX_BODY=1048576 AFFINITY=1
EXTRA=()
need() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --replicas) need "$@"; N=$2; shift 2 ;;
    --port) need "$@"; PORT=$2; shift 2 ;;
    -m | --model) need "$@"; MODEL=$2; shift 2 ;;
    -t | --threads) need "$@"; THREADS=$2; shift 2 ;;
    --run-dir) need "$@"; RUN_DIR=$2; shift 2 ;;
    --bin) need "$@"; BIN=$2; shift 2 ;;
    --max-body) need "$@"; MAX_BODY=$2; shift 2 ;;
    --no-affinity) AFFINITY=0; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; EXTRA+=("$@"); break ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done

[ -n "$RUN_DIR" ] || die "--run-dir is required"
if [ "$cmd" = stop ]; then
  [ -d "$RUN_DIR" ] || die "no run directory $RUN_DIR"
  stop_all "$(cd "$RUN_DIR" && pwd)"
  exit 0
fi

isnum() { case "$1" in '' | *[!0-9]*) return 1 ;; esac; }
isnum "$N" && [ "$N" -ge 1 ] && [ "$N" -le 64 ] || die "--replicas must be 1..64 (got '$N')"
isnum "$PORT" && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "--port must be 1..65535 (got '$PORT')"
isnum "$MAX_BODY" && [ "$MAX_BODY" -ge 1024 ] || die "--max-body must be at least 1024 (got '$MAX_BODY')"
if [ -z "$THREADS" ]; then
  THREADS=$(($(nproc) / N))
  [ "$THREADS" -ge 1 ] || THREADS=1
fi
isnum "$THREADS" && [ "$THREADS" -ge 1 ] || die "--threads must be a positive number (got '$THREADS')"
[ -x "$BIN" ] || die "slimlm binary not found: $BIN (build it, or give --bin)"
if [ -z "$MODEL" ]; then MODEL=$("$ROOT/scripts/fetch-model.sh" 2>/dev/null) || MODEL=""; fi
[ -f "$MODEL" ] || die "model not found: '${MODEL}' (give --model)"
command -v nginx >/dev/null 2>&1 || die "nginx not found (scripts/install-deps.sh installs nginx-light)"
command -v curl >/dev/null 2>&1 || die "curl not found"
if [ $AFFINITY = 1 ] && [ ! -f "$JS_MODULE" ]; then
  die "njs module $JS_MODULE not found (install libnginx-mod-http-js, or use --no-affinity)"
fi

mkdir -p "$RUN_DIR/nginx/tmp" || die "cannot create $RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
NGX=$RUN_DIR/nginx
if is_ours "$(cat "$NGX/nginx.pid" 2>/dev/null)" nginx; then die "nginx of $RUN_DIR is running (stop it first)"; fi
for f in "$RUN_DIR"/replica-*.pid; do
  [ -f "$f" ] || continue
  is_ours "$(cat "$f" 2>/dev/null)" serve && die "a replica of $RUN_DIR is running (stop it first)"
  rm -f "$f"
done
rm -f "$RUN_DIR"/replica-*.port "$RUN_DIR"/replica-*.log

fail() { echo "replicas.sh: error: $*" >&2; stop_all "$RUN_DIR"; exit 1; }

# replicas: all started at once (they load in parallel), then each waited for
for i in $(seq 0 $((N - 1))); do
  "$BIN" serve -m "$MODEL" --host 127.0.0.1 --port 0 -t "$THREADS" --max-body "$MAX_BODY" "${EXTRA[@]}" \
    </dev/null >"$RUN_DIR/replica-$i.log" 2>&1 &
  echo $! >"$RUN_DIR/replica-$i.pid"
done
SERVERS=""
for i in $(seq 0 $((N - 1))); do
  pid=$(cat "$RUN_DIR/replica-$i.pid") port=""
  for _ in $(seq 1 1200); do  # the port line, then a 200 from /health; at most 120 s
    alive "$pid" || fail "replica $i exited: $(tail -n 3 "$RUN_DIR/replica-$i.log" | tr '\n' ' ')"
    [ -n "$port" ] || port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$RUN_DIR/replica-$i.log")
    [ -n "$port" ] && http_ok "http://127.0.0.1:$port/health" && break
    sleep 0.1
  done
  [ -n "$port" ] && http_ok "http://127.0.0.1:$port/health" || fail "replica $i did not become healthy in 120 s"
  echo "$port" >"$RUN_DIR/replica-$i.port"
  SERVERS+="        server 127.0.0.1:$port max_fails=1 fail_timeout=10s;"$'\n'
done

# nginx.conf from the template
conf=$(<"$HERE/nginx.conf.in")
USER_LINE="" LOAD_JS="" JS="" BALANCE="        # round robin (--no-affinity)"
[ "$(id -u)" = 0 ] && USER_LINE="user root;  # workers read the run directory"
if [ $AFFINITY = 1 ]; then
  cp "$HERE/affinity.js" "$NGX/affinity.js" || fail "cannot copy affinity.js"
  LOAD_JS="load_module $JS_MODULE;"
  JS="    js_path $NGX;"$'\n'"    js_import affinity from affinity.js;"$'\n'"    js_set \$slimlm_affinity affinity.key;"
  BALANCE="        hash \$slimlm_affinity consistent;  # prompt-prefix affinity (deploy/affinity.js)"
fi
conf=${conf//@USER@/$USER_LINE}
conf=${conf//@LOAD_JS@/$LOAD_JS}
conf=${conf//@JS@/$JS}
conf=${conf//@BALANCE@/$BALANCE}
conf=${conf//@SERVERS@/${SERVERS%$'\n'}}
conf=${conf//@NGINX_DIR@/$NGX}
conf=${conf//@PORT@/$PORT}
conf=${conf//@REPLICAS@/$N}
conf=${conf//@MAX_BODY@/$MAX_BODY}
printf '%s\n' "$conf" >"$NGX/nginx.conf" || fail "cannot write $NGX/nginx.conf"

nginx -q -t -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" >"$NGX/start.log" 2>&1 ||
  fail "nginx rejects its configuration: $(tr '\n' ' ' <"$NGX/start.log")"
nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" >"$NGX/start.log" 2>&1 ||
  fail "nginx did not start: $(tail -n 1 "$NGX/start.log")"
for _ in $(seq 1 100); do
  http_ok "http://127.0.0.1:$PORT/health" && break
  sleep 0.1
done
http_ok "http://127.0.0.1:$PORT/health" || fail "nginx on port $PORT does not answer /health: $(tail -n 3 "$NGX/error.log" | tr '\n' ' ')"
echo "http://127.0.0.1:$PORT"
