#!/usr/bin/env bash
# Token endpoint through nginx (issue 10, part 3), in one invocation, interleaved run by run:
#
#   ours-direct   authz serve, direct TLS (as run_token_bench.sh runs it)
#   ours-nginx    nginx (TLS, one worker) -> authz serve --proxy-cert-header nginx (plain HTTP)
#   peer-nginx    the same kind of nginx  -> oidc-provider-behind-nginx.mjs (plain HTTP)
#   peer-direct   (optional, SIDES) the peer as run_token_bench.sh runs it
#
#   tests/bench/run_proxy_bench.sh                                    # RUNS=3 DURATION=10, keep-alive
#   RUNS=2 DURATION=5 MODES="keepalive handshake" tests/bench/run_proxy_bench.sh
#
# One worker each: our server's one process, the peer's one node process, one nginx worker per
# nginx. Each nginx is started by the same parent process as the server behind it, and that
# parent's PID is what ../shared/bench/peer/run-peer-bench.sh gets as TARGET_PID: measure.py
# counts a PID's whole process tree, so a "via nginx" side's CPU is nginx's plus its upstream's,
# and nginx is not counted as foreign load. This script splits it (the two trees' CPU read with
# measure.py's tree_cpu before and after each measurement).
# For each run, client and mode: one measurement of every side, back to back, the first side
# rotating from one cell to the next; then proxy_compare.py prints per side req/s, p50/p99, CPU
# per token and cores used, and the medians of the per-run ratios. See tests/bench/README.md.
#
# Knobs (environment; passed to run-peer-bench.sh, whose defaults they are, except MODES):
#   RUNS=3 DURATION=10 WARMUP=2 CONNS=16 CONNS_KEEPALIVE CONNS_HANDSHAKE MODES=keepalive
#   CLIENTS="pki selfsigned" LOADGEN_KEEPALIVE=c LOADGEN_HANDSHAKE=go QUIET_WAIT=60
#   MAX_FOREIGN=15 RETRIES=3
# This script's own:
#   SIDES="ours-direct ours-nginx peer-nginx" (any of those and peer-direct, in any order)
#   PEER_DIR=../shared/bench/peer  LOG_LEVEL=info (our servers)  CERT_CACHE=1000 (the peer
#   variant's remembered verdicts, 0 = off)  NGINX=nginx  KEEP_TMP=0 (1 keeps logs and configs)
set -euo pipefail

# shellcheck source=tests/bench/ours_server.sh
. "$(dirname "$0")/ours_server.sh"
KEEP_TMP="${KEEP_TMP:-0}"
NGINX="${NGINX:-nginx}"
SIDES="${SIDES:-ours-direct ours-nginx peer-nginx}"
export RUNS="${RUNS:-3}" DURATION="${DURATION:-10}" WARMUP="${WARMUP:-2}" CONNS="${CONNS:-16}"
export CONNS_KEEPALIVE="${CONNS_KEEPALIVE:-$CONNS}" CONNS_HANDSHAKE="${CONNS_HANDSHAKE:-$CONNS}"
export MODES="${MODES:-keepalive}" CLIENTS="${CLIENTS:-pki selfsigned}"
export LOADGEN_KEEPALIVE="${LOADGEN_KEEPALIVE:-c}" LOADGEN_HANDSHAKE="${LOADGEN_HANDSHAKE:-go}"
export QUIET_WAIT="${QUIET_WAIT:-60}" MAX_FOREIGN="${MAX_FOREIGN:-15}" RETRIES="${RETRIES:-3}"
export PKI_CLIENT_ID=bench-pki SELF_CLIENT_ID=bench-selfsigned
export WORKERS=1 JWT_ALG=ES256 CERT_CACHE="${CERT_CACHE:-1000}"
unset TARGET_URL TARGET_PID

for side in $SIDES; do
  case "$side" in ours-direct|ours-nginx|peer-nginx|peer-direct) ;;
    *) echo "SIDES: unknown side $side (ours-direct ours-nginx peer-nginx peer-direct)" >&2; exit 2 ;;
  esac
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ROOT_TMP="$(mktemp -d /tmp/authz-proxy-bench.XXXXXX)"
declare -A URL=() TARGET=() UPSTREAM=() NGINX_PID=() HOLDER=()

# stop_pid NAME PID SIGNAL: SIGNAL, then SIGKILL after 10 s; only a PID this script started.
stop_pid() {
  local name=$1 pid=$2 sig=$3
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  echo "$name stopped (pid $pid)"
}

stop_side() {
  local side=$1 pid
  # A holder writes its children's PIDs as it starts them; read what is there.
  [ -s "$ROOT_TMP/$side/upstream.pid" ] && UPSTREAM[$side]="$(cat "$ROOT_TMP/$side/upstream.pid")"
  [ -s "$ROOT_TMP/$side/nginx.pid.child" ] && NGINX_PID[$side]="$(cat "$ROOT_TMP/$side/nginx.pid.child")"
  stop_pid "$side nginx" "${NGINX_PID[$side]:-}" TERM
  pid="${UPSTREAM[$side]:-}"
  # In this shell, not a pipe's subshell: the direct sides' servers are its children to reap.
  if [[ "$side" == ours-* ]]; then
    SERVER_PID="$pid" stop_ours > "$ROOT_TMP/stop.out"; sed "s/^/$side: /" "$ROOT_TMP/stop.out"
  else stop_pid "$side node" "$pid" TERM; fi
  stop_pid "$side holder" "${HOLDER[$side]:-}" TERM >/dev/null
  UPSTREAM[$side]="" NGINX_PID[$side]="" HOLDER[$side]=""
}

cleanup() {
  local side
  for side in $SIDES; do stop_side "$side" || true; done
  if [ "$KEEP_TMP" = 1 ]; then echo "kept $ROOT_TMP"; else rm -rf "$ROOT_TMP"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# --- prerequisites (idempotent) ---------------------------------------------------------------
install_bench_prerequisites "$NGINX:nginx"
[ -d "$PEER_DIR/node_modules/oidc-provider" ] || (cd "$PEER_DIR" && npm ci --no-audit --no-fund)
[ -f "$PKI/client.crt" ] || (cd "$PEER_DIR" && ./make-pki.sh)
mkdir -p "$RESULTS"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="$RESULTS/proxy-$STAMP.jsonl"
CONSOLE="$RESULTS/proxy-$STAMP.out"
: > "$OUT"

# nginx_config DIR PORT UPSTREAM_PORT: nginx-bench.conf.in filled in, as DIR/nginx.conf.
nginx_config() {
  mkdir -p "$1"
  sed -e "s#@PREFIX@#$1#g" -e "s#@PORT@#$2#g" -e "s#@UPSTREAM_PORT@#$3#g" -e "s#@PKI@#$PKI#g" \
    "$BENCH/nginx-bench.conf.in" > "$1/nginx.conf"
  "$NGINX" -t -q -p "$1" -c "$1/nginx.conf" -g 'daemon off;'
}

# In a holder (a background subshell): the upstream, then nginx, both its children; then wait.
# The holder's PID is the side's TARGET_PID, so that measure.py counts both.
hold_ours_nginx() { # dir port upstream_port
  local dir=$1 port=$2
  TMP="$dir" OUR_PORT="$3" OUR_PROXY=nginx OUR_ISSUER="https://127.0.0.1:$port"
  start_ours > "$dir/info" || { stop_ours; exit 1; }
  echo "$SERVER_PID" > "$dir/upstream.pid"
  "$NGINX" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g 'daemon off;' > "$dir/nginx.out" 2>&1 &
  echo $! > "$dir/nginx.pid.child"
  wait
}
hold_peer_nginx() { # dir port upstream_port
  local dir=$1 port=$2
  env NODE_ENV=production HOST=127.0.0.1 PORT="$3" PEER_DIR="$PEER_DIR" ISSUER="https://127.0.0.1:$port" \
    node "$BENCH/oidc-provider-behind-nginx.mjs" > "$dir/upstream.log" 2>&1 &
  echo $! > "$dir/upstream.pid"
  "$NGINX" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g 'daemon off;' > "$dir/nginx.out" 2>&1 &
  echo $! > "$dir/nginx.pid.child"
  wait
}

# wait_for_file FILE HOLDER_PID: until FILE is written, or the holder has given up.
wait_for_file() {
  for _ in $(seq 1 400); do
    [ -s "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { echo "$(dirname "$1"): its holder exited" >&2; return 1; }
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2; return 1
}

start_side() {
  local side=$1 dir="$ROOT_TMP/$1" port up
  mkdir -p "$dir"
  port="$(free_port)"
  URL[$side]="https://127.0.0.1:$port/token"
  case "$side" in
    ours-direct)
      TMP="$dir" OUR_PORT="$port"
      start_ours > "$dir/info"
      UPSTREAM[$side]=$SERVER_PID TARGET[$side]=$SERVER_PID
      ;;
    peer-direct)
      ( cd "$PEER_DIR" && exec env NODE_ENV=production PORT="$port" node oidc-provider-server.mjs ) \
        > "$dir/upstream.log" 2>&1 &
      UPSTREAM[$side]=$! TARGET[$side]=$!
      wait_until_up "$side" "$!" "https://127.0.0.1:$port/.well-known/openid-configuration" "$dir/upstream.log" 10
      echo "peer: oidc-provider $(cd "$PEER_DIR" && node -p "require('./node_modules/oidc-provider/package.json').version") node $(node --version) pid ${UPSTREAM[$side]} port $port, direct TLS" > "$dir/info"
      ;;
    ours-nginx|peer-nginx)
      up="$(free_port)"
      nginx_config "$dir/nginx" "$port" "$up"
      if [ "$side" = ours-nginx ]; then hold_ours_nginx "$dir" "$port" "$up" &
      else hold_peer_nginx "$dir" "$port" "$up" & fi
      HOLDER[$side]=$! TARGET[$side]=$!
      wait_for_file "$dir/upstream.pid" "${HOLDER[$side]}"
      UPSTREAM[$side]="$(cat "$dir/upstream.pid")"
      wait_for_file "$dir/nginx.pid.child" "${HOLDER[$side]}"
      NGINX_PID[$side]="$(cat "$dir/nginx.pid.child")"
      if [ "$side" = peer-nginx ]; then
        wait_until_up "$side upstream" "${UPSTREAM[$side]}" "http://127.0.0.1:$up/.well-known/openid-configuration" \
          "$dir/upstream.log" 10
        echo "peer: oidc-provider $(cd "$PEER_DIR" && node -p "require('./node_modules/oidc-provider/package.json').version") node $(node --version) pid ${UPSTREAM[$side]} port $up (plain HTTP), oidc-provider-behind-nginx.mjs CERT_CACHE=$CERT_CACHE" > "$dir/info"
      fi
      # Any HTTP answer over TLS (a 404 from the upstream) will do.
      wait_until_up "$side nginx" "${NGINX_PID[$side]}" "https://127.0.0.1:$port/" "$dir/nginx/error.log" 10
      echo "nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') pid ${NGINX_PID[$side]} port $port -> 127.0.0.1:$up, 1 worker, upstream keepalive 32" >> "$dir/info"
      ;;
  esac
  sed "s/^/$side: /" "$dir/info" | tee -a "$CONSOLE"
}

# CPU ticks of the upstream's and nginx's process trees (measure.py's accounting).
ticks() { # side -> "UPSTREAM NGINX"
  python3 -B -c 'import sys; sys.path.insert(0, sys.argv[1]); from measure import tree_cpu
print(*(tree_cpu(p) if p != "-" else 0 for p in sys.argv[2:]))' \
    "$PEER_DIR" "${UPSTREAM[$1]:--}" "${NGINX_PID[$1]:--}"
}

# One measurement (RUNS=1, one client, one mode) of one side, appended to $OUT with the side,
# the run and the split of its CPU between the upstream and nginx.
bench_cell() { # side client mode run
  local side=$1 client=$2 mode=$3 run=$4 before after rel
  echo; echo "--------------- $side: client=$client mode=$mode ---------------"
  before="$(ticks "$side")"
  TARGET_URL="${URL[$side]}" TARGET_PID="${TARGET[$side]}" RUNS=1 CLIENTS="$client" MODES="$mode" \
    "$PEER_DIR/run-peer-bench.sh" > "$ROOT_TMP/cell.out" 2>&1 || { cat "$ROOT_TMP/cell.out"; return 1; }
  after="$(ticks "$side")"
  grep -E '^(== run|   |  requests=|  latency|machine|WARNING|target|sanity)' "$ROOT_TMP/cell.out" || true
  cat "$ROOT_TMP/cell.out" >> "$CONSOLE"
  rel="$(sed -n 's/^results: //p' "$ROOT_TMP/cell.out" | tail -1)"
  [ -n "$rel" ] || { cat "$ROOT_TMP/cell.out"; echo "no results file from the $side run" >&2; return 1; }
  "$VENV/bin/python" "$BENCH/proxy_compare.py" annotate "$PEER_DIR/$rel" --side "$side" --run "$run" \
    --ticks-before $before --ticks-after $after >> "$OUT"
}

# Peak memory and log summaries, read before the processes stop.
report_sides() {
  local side pid worker
  echo "Processes"
  for side in $SIDES; do
    printf '  %s: upstream pid %s VmHWM %s kB' "$side" "${UPSTREAM[$side]}" \
      "$(awk '/^VmHWM:/ {print $2}' "/proc/${UPSTREAM[$side]}/status" 2>/dev/null || echo '?')"
    pid="${NGINX_PID[$side]:-}"
    if [ -n "$pid" ]; then
      worker="$(pgrep -P "$pid" | head -1 || true)"
      printf ', nginx master %s worker %s VmHWM %s kB; nginx error.log: %s lines' "$pid" "${worker:-?}" \
        "$(awk '/^VmHWM:/ {print $2}' "/proc/${worker:-0}/status" 2>/dev/null || echo '?')" \
        "$(wc -l < "$ROOT_TMP/$side/nginx/error.log" 2>/dev/null || echo 0)"
    fi
    echo
    if [[ "$side" == ours-* ]]; then
      local log="$ROOT_TMP/$side/authz-server.log"
      echo "    our log: $(grep -c '"token_issued"' "$log" || true) token_issued lines," \
        "$(grep -cE '"level": "(warning|error|critical)"|Traceback' "$log" || true) warnings/errors"
      grep -E '"level": "(warning|error|critical)"|Traceback' "$log" | head -3 | sed 's/^/      /' || true
    fi
    if [ -n "$pid" ]; then head -3 "$ROOT_TMP/$side/nginx/error.log" 2>/dev/null | sed 's/^/      nginx: /' || true; fi
  done
}

{
  echo "knobs: RUNS=$RUNS DURATION=$DURATION WARMUP=$WARMUP CONNS_KEEPALIVE=$CONNS_KEEPALIVE CONNS_HANDSHAKE=$CONNS_HANDSHAKE MODES=\"$MODES\" CLIENTS=\"$CLIENTS\" LOADGEN_KEEPALIVE=$LOADGEN_KEEPALIVE LOADGEN_HANDSHAKE=$LOADGEN_HANDSHAKE SIDES=\"$SIDES\""
  echo "box: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$CONSOLE"
for side in $SIDES; do start_side "$side"; done

read -r -a sides <<< "$SIDES"
n=${#sides[@]}
cell=0
for run in $(seq 1 "$RUNS"); do
  for client in $CLIENTS; do
    for mode in $MODES; do
      order=()
      for i in $(seq 0 $((n - 1))); do order+=("${sides[$(((i + cell) % n))]}"); done
      echo; echo "=============== run $run/$RUNS client=$client mode=$mode: ${order[*]} ==============="
      for side in "${order[@]}"; do bench_cell "$side" "$client" "$mode" "$run"; done
      cell=$((cell + 1))
    done
  done
done

echo
report_sides > "$ROOT_TMP/processes.txt"
for side in $SIDES; do stop_side "$side"; done
echo "box at the end: load average $(cut -d' ' -f1-3 /proc/loadavg)" >> "$ROOT_TMP/processes.txt"
"$VENV/bin/python" "$BENCH/proxy_compare.py" table "$OUT" --max-foreign "$MAX_FOREIGN" --sides "$SIDES" \
  --console "$CONSOLE" --notes "$ROOT_TMP/processes.txt" | tee "$RESULTS/proxy-summary-$STAMP.txt"
echo "(saved: $RESULTS/proxy-summary-$STAMP.txt, proxy-$STAMP.jsonl, proxy-$STAMP.out)"
