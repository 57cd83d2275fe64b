#!/usr/bin/env bash
# The shared Redis store's benchmark, in one invocation, interleaved round by round:
#
#   sqlite       ours, 1 worker, embedded SQLite store (--data-dir)
#   redis        ours, 1 worker, --store redis://  (a redis-server this script starts)
#   redis-w2     ours, --workers 2, the same Redis
#   redis-2inst  ours, two `authz serve` (1 worker each, two ports) on the same Redis, the load
#                split over both: two load generators at once, CONNS/2 connections each, summed
#   peer-w2      the peer (oidc-provider) as a 2-worker node:cluster
#   optional: peer-w1 (1 process), peer-2inst (two 1-process peers, load split like redis-2inst),
#             sqlite-w2 (ours, --workers 2, SQLite)
#
#   tests/bench/run_store_bench.sh                       # RUNS=3 DURATION=10, keep-alive + new connection: ~9 min
#   RUNS=2 DURATION=5 MODES=keepalive tests/bench/run_store_bench.sh          # ~2 min
#   SIDES="sqlite redis redis-w2 redis-2inst peer-w2 peer-w1 peer-2inst" tests/bench/run_store_bench.sh
#
# Every side stays up for the whole invocation (idle when not measured). For each run, client and
# mode, every side is measured once, back to back, the first side rotating from one cell to the
# next; store_bench.py measure runs the load generator(s) and reads /proc (server CPU per process,
# load generator, Redis, foreign) and Redis's INFO commandstats before and after; store_bench.py
# table prints the medians, the ratios of the measurements of the same round, Redis commands per
# token, and the 2-worker figure taken apart. See tests/bench/README.md.
#
# Knobs (environment):
#   RUNS=3 DURATION=10 WARMUP=2 CONNS=16 (CONNS_KEEPALIVE / CONNS_HANDSHAKE per mode)
#   MODES="keepalive handshake" CLIENTS=pki (also selfsigned) LOADGEN_KEEPALIVE=c LOADGEN_HANDSHAKE=go
#   QUIET_WAIT=60 MAX_FOREIGN=15 RETRIES=3 (as run-peer-bench.sh)
#   SIDES="sqlite redis redis-w2 redis-2inst peer-w2"  LOG_LEVEL=info (our servers)
#   PEER_DIR=../shared/bench/peer (read only: its sources are copied to PEER_WORK, where the
#   peer's node_modules, PKI and load generators are made; default $TMPDIR/authz-peer-bench, kept)
#   REDIS_SERVER=redis-server  KEEP_TMP=0 (1 keeps logs, data dirs and Redis's dir)
set -euo pipefail

# shellcheck source=tests/bench/ours_server.sh
. "$(dirname "$0")/ours_server.sh"
KEEP_TMP="${KEEP_TMP:-0}"
SIDES="${SIDES:-sqlite redis redis-w2 redis-2inst peer-w2}"
RUNS="${RUNS:-3}" DURATION="${DURATION:-10}" WARMUP="${WARMUP:-2}" CONNS="${CONNS:-16}"
CONNS_KEEPALIVE="${CONNS_KEEPALIVE:-$CONNS}" CONNS_HANDSHAKE="${CONNS_HANDSHAKE:-$CONNS}"
MODES="${MODES:-keepalive handshake}" CLIENTS="${CLIENTS:-pki}"
LOADGEN_KEEPALIVE="${LOADGEN_KEEPALIVE:-c}" LOADGEN_HANDSHAKE="${LOADGEN_HANDSHAKE:-go}"
QUIET_WAIT="${QUIET_WAIT:-60}" MAX_FOREIGN="${MAX_FOREIGN:-15}" RETRIES="${RETRIES:-3}"
PEER_WORK="${PEER_WORK:-${TMPDIR:-/tmp}/authz-peer-bench}"
REDIS_SERVER="${REDIS_SERVER:-redis-server}"

declare -A KIND=([sqlite]=ours [redis]=ours [redis-w2]=ours [redis-2inst]=ours [sqlite-w2]=ours
                 [peer-w1]=peer [peer-w2]=peer [peer-2inst]=peer)
declare -A WORKERS_OF=([sqlite]=1 [redis]=1 [redis-w2]=2 [redis-2inst]=1 [sqlite-w2]=2
                       [peer-w1]=1 [peer-w2]=2 [peer-2inst]=1)
declare -A INSTANCES=([sqlite]=1 [redis]=1 [redis-w2]=1 [redis-2inst]=2 [sqlite-w2]=1
                      [peer-w1]=1 [peer-w2]=1 [peer-2inst]=2)
for side in $SIDES; do
  [ -n "${KIND[$side]:-}" ] || { echo "SIDES: unknown side $side (${!KIND[*]})" >&2; exit 2; }
done
for mode in $MODES; do
  case "$mode" in keepalive|handshake|resume) ;; *) echo "MODES: unknown mode $mode" >&2; exit 2 ;; esac
done
for client in $CLIENTS; do
  case "$client" in pki|selfsigned) ;; *) echo "CLIENTS: unknown client $client" >&2; exit 2 ;; esac
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

TMP="$(mktemp -d /tmp/authz-store-bench.XXXXXX)"
REDIS_PID="" REDIS_PORT=""
STARTED=()                      # "name pid signal", in start order
declare -A SIDE_PIDS=() SIDE_URLS=() SIDE_LOGS=()

# descendants PID: every process under PID (children first listed last), read before stopping it.
descendants() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null || true); do echo "$child"; descendants "$child"; done
}
# stop_tree NAME PID SIGNAL: SIGNAL to PID, SIGKILL after 10 s; then any of its descendants left
# (a cluster's or uvicorn's workers). Only processes this script started, by their PID.
stop_tree() {
  local name=$1 pid=$2 sig=$3 kids p
  kill -0 "$pid" 2>/dev/null || return 0
  kids="$(descendants "$pid" | tr '\n' ' ')"
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  for p in $kids; do
    for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  echo "$name stopped (pid $pid)"
}

stop_all() {
  local i entry
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    entry="${STARTED[$i]}"
    # shellcheck disable=SC2086
    stop_tree $entry || true
  done
  STARTED=()
  if [ -n "$REDIS_PID" ]; then stop_tree redis-server "$REDIS_PID" TERM || true; REDIS_PID=""; fi
}

cleanup() {
  stop_all
  if [ "$KEEP_TMP" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# --- prerequisites (idempotent) ---------------------------------------------------------------
install_bench_prerequisites "$REDIS_SERVER:redis-server"
# Debian's package starts a system redis on 6379: this benchmark runs its own.
if [[ " $INSTALLED_PACKAGES " == *" redis-server "* ]] && command -v service >/dev/null; then
  service redis-server stop >/dev/null 2>&1 || true
fi

# The shared peer directory is read-only: its sources are copied to PEER_WORK (peer_work.sh).
# shellcheck source=tests/bench/peer_work.sh
. "$BENCH/peer_work.sh"
prepare_peer
PKI="$PEER_WORK/pki"
loadgen_for() { # mode -> binary
  local kind=$LOADGEN_KEEPALIVE
  [ "$1" = keepalive ] || kind=$LOADGEN_HANDSHAKE
  if [ "$kind" = go ] && [ -x "$PEER_WORK/loadgen-go-bin" ]; then echo "$PEER_WORK/loadgen-go-bin"
  else echo "$PEER_WORK/loadgen"; fi
}

mkdir -p "$RESULTS"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="$RESULTS/store-$STAMP.jsonl"
CONSOLE="$RESULTS/store-$STAMP.out"
: > "$OUT"

# --- Redis, and the two stores with the same records ----------------------------------------------
start_redis() {
  REDIS_PORT="$(free_port)"
  mkdir -p "$TMP/redis"
  # No persistence: the benchmark writes a handful of records before it starts serving.
  "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" --save '' --appendonly no \
    --daemonize no --logfile "$TMP/redis/redis.log" > /dev/null 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 50); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "$TMP/redis/redis.log" >&2; echo "redis-server exited" >&2; exit 1; }
    sleep 0.1
  done
  STORE_URL="redis://127.0.0.1:$REDIS_PORT/0"
}

# Clients and the signing key made in SQLite, then `authz store copy` into Redis: both stores hold
# the same records (the same key, so tokens of the same size).
DATA="$TMP/sqlite-data"
prepare_stores() {
  mkdir -p "$DATA"
  _authz clients add bench-pki --auth-method tls_client_auth --subject-dn "CN=bench-client,O=Bench" \
    --data-dir "$DATA" > /dev/null
  _authz clients add bench-selfsigned --auth-method self_signed_tls_client_auth --cert "$PKI/selfsigned.crt" \
    --data-dir "$DATA" > /dev/null
  _authz keys list --data-dir "$DATA" > /dev/null   # creates the signing key
  _authz store copy --from "$DATA" --store "$STORE_URL" | sed 's/^/  store copy: /'
}

# --- the sides -------------------------------------------------------------------------------------
# wait_ready NAME PID URL LOG MARKER COUNT: up (wait_until_up), then COUNT lines with MARKER in LOG
# (one per worker: with 2 workers, the second may still be starting when the first answers).
wait_ready() {
  local name=$1 pid=$2 url=$3 log=$4 marker=$5 count=$6
  wait_until_up "$name" "$pid" "$url" "$log" 30 || return 1
  for _ in $(seq 1 300); do
    [ "$(grep -c "$marker" "$log" || true)" -ge "$count" ] && return 0
    sleep 0.1
  done
  tail -20 "$log" >&2; echo "$name: $count x '$marker' not seen in 30 s" >&2; return 1
}

start_side() {
  local side=$1 i port pid log workers=${WORKERS_OF[$1]} info=""
  local -a store
  if [[ "$side" == sqlite* ]]; then store=(--data-dir "$DATA"); else store=(--store "$STORE_URL"); fi
  SIDE_PIDS[$side]="" SIDE_URLS[$side]="" SIDE_LOGS[$side]=""
  for i in $(seq 1 "${INSTANCES[$side]}"); do
    port="$(free_port)"
    log="$TMP/$side-$i.log"
    if [ "${KIND[$side]}" = ours ]; then
      _clean_env; _authz_command
      # A simple command in the background: $! is the server (the uvicorn master with 2 workers).
      "${CLEAN_ENV[@]}" "${AUTHZ_CMD[@]}" serve --tls-cert "$PKI/server.crt" --tls-key "$PKI/server.key" \
        --trust-anchor "$PKI/ca.crt" --host 127.0.0.1 --port "$port" "${store[@]}" --workers "$workers" \
        --log-level "$LOG_LEVEL" --log-format json > "$log" 2>&1 &
      pid=$!
      STARTED+=("$side-$i $pid INT")
      wait_ready "$side" "$pid" "https://127.0.0.1:$port/.well-known/oauth-authorization-server" "$log" \
        "Application startup complete" "$workers"
      info="authz $(_authz --version | awk '{print $NF}') git $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- authz 2>/dev/null || echo '+uncommitted')"
      info+=" --workers $workers ${store[*]}"
    else
      ( cd "$PEER_WORK" && exec env NODE_ENV=production HOST=127.0.0.1 PORT="$port" WORKERS="$workers" JWT_ALG=ES256 \
          node oidc-provider-server.mjs ) > "$log" 2>&1 &
      pid=$!
      STARTED+=("$side-$i $pid TERM")
      wait_ready "$side" "$pid" "https://127.0.0.1:$port/.well-known/openid-configuration" "$log" \
        "^oidc-provider https" "$workers"
      info="oidc-provider $(cd "$PEER_WORK" && node -p "require('./node_modules/oidc-provider/package.json').version") node $(node --version) WORKERS=$workers JWT_ALG=ES256"
    fi
    SIDE_PIDS[$side]+="$pid " SIDE_URLS[$side]+="https://127.0.0.1:$port/token " SIDE_LOGS[$side]+="$log "
    echo "$side: instance $i pid $pid port $port: $info" | tee -a "$CONSOLE"
  done
  # Both clients get a token from every instance (the peer validates its static clients lazily).
  local url c id crt
  for url in ${SIDE_URLS[$side]}; do
    for c in pki selfsigned; do
      if [ "$c" = pki ]; then id=bench-pki crt=client; else id=bench-selfsigned crt=selfsigned; fi
      curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/$crt.crt" --key "$PKI/$crt.key" \
        -d grant_type=client_credentials -d "client_id=$id" "$url" | grep -q access_token \
        || { echo "sanity check failed: $id at $url ($side)" >&2; exit 1; }
    done
  done
}

all_roots() { local s; for s in $SIDES; do echo ${SIDE_PIDS[$s]}; done; }

bench_cell() { # side client mode run
  local side=$1 client=$2 mode=$3 run=$4 conns url pid n id
  local -a args=()
  n=${INSTANCES[$side]}
  if [ "$mode" = keepalive ]; then conns=$CONNS_KEEPALIVE; else conns=$CONNS_HANDSHAKE; fi
  for url in ${SIDE_URLS[$side]}; do args+=(--target "$url" $((conns / n))); done
  for pid in ${SIDE_PIDS[$side]}; do args+=(--side-pid "$pid"); done
  for pid in $(all_roots); do args+=(--bench-pid "$pid"); done
  [[ "$side" == redis* ]] && args+=(--redis-port "$REDIS_PORT")
  if [ "$client" = pki ]; then id=bench-pki; else id=bench-selfsigned; fi
  "$VENV/bin/python" -B "$BENCH/store_bench.py" measure --out "$OUT" --side "$side" --run "$run" \
    --client "$client" --client-id "$id" --mode "$mode" --loadgen "$(loadgen_for "$mode")" --pki "$PKI" \
    --duration "$DURATION" --warmup "$WARMUP" --redis-pid "$REDIS_PID" --peer-dir "$PEER_WORK" \
    --quiet-wait "$QUIET_WAIT" --max-foreign "$MAX_FOREIGN" --retries "$RETRIES" "${args[@]}" 2>&1 \
    | tee -a "$CONSOLE"
}

# Peak memory of every process and what our servers logged, read before they stop.
report() {
  local side pid p log
  echo "Processes (VmHWM = peak RSS)"
  for side in $SIDES; do
    for pid in ${SIDE_PIDS[$side]}; do
      printf '  %s: pid %s VmHWM %s kB' "$side" "$pid" "$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo '?')"
      for p in $(descendants "$pid"); do
        printf ', child %s %s kB' "$p" "$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo '?')"
      done
      echo
    done
    if [ "${KIND[$side]}" = ours ]; then
      for log in ${SIDE_LOGS[$side]}; do
        echo "    $(basename "$log"): $(grep -c '"token_issued"' "$log" || true) token_issued lines," \
          "$(grep -cE '"level": ?"(warning|error|critical)"|Traceback' "$log" || true) warnings/errors"
        grep -E '"level": ?"(warning|error|critical)"|Traceback' "$log" | head -3 | sed 's/^/      /' || true
      done
    fi
  done
  echo "  redis-server pid $REDIS_PID: $("$REDIS_SERVER" --version | awk '{print $3}'), used_memory_peak" \
    "$(redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' | awk -F: '/^used_memory_peak_human:/ {print $2}')," \
    "clients $(redis-cli -p "$REDIS_PORT" info clients | tr -d '\r' | awk -F: '/^connected_clients:/ {print $2}')"
  echo "  box at the end: load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

read -r -a sides <<< "$SIDES"
ncells=$((RUNS * $(wc -w <<< "$CLIENTS") * $(wc -w <<< "$MODES") * ${#sides[@]}))
{
  echo "knobs: RUNS=$RUNS DURATION=$DURATION WARMUP=$WARMUP CONNS_KEEPALIVE=$CONNS_KEEPALIVE CONNS_HANDSHAKE=$CONNS_HANDSHAKE MODES=\"$MODES\" CLIENTS=\"$CLIENTS\" LOADGEN_KEEPALIVE=$LOADGEN_KEEPALIVE LOADGEN_HANDSHAKE=$LOADGEN_HANDSHAKE SIDES=\"$SIDES\" LOG_LEVEL=$LOG_LEVEL"
  echo "box: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $ncells measurements of $((DURATION + WARMUP)) s: about $(( (ncells * (DURATION + WARMUP + 3) + 30) / 60 )) min on a quiet box"
} | tee "$CONSOLE"
start_redis
echo "redis: $("$REDIS_SERVER" --version | awk '{print $3}') pid $REDIS_PID port $REDIS_PORT (no persistence), $STORE_URL" | tee -a "$CONSOLE"
prepare_stores | tee -a "$CONSOLE"
for side in $SIDES; do start_side "$side"; done

cell=0
for run in $(seq 1 "$RUNS"); do
  for client in $CLIENTS; do
    for mode in $MODES; do
      order=()
      for i in $(seq 0 $((${#sides[@]} - 1))); do order+=("${sides[$(((i + cell) % ${#sides[@]}))]}"); done
      echo; echo "=============== run $run/$RUNS client=$client mode=$mode: ${order[*]} ===============" | tee -a "$CONSOLE"
      for side in "${order[@]}"; do bench_cell "$side" "$client" "$mode" "$run"; done
      cell=$((cell + 1))
    done
  done
done

echo
report > "$TMP/notes.txt"
stop_all
"$VENV/bin/python" -B "$BENCH/store_bench.py" table "$OUT" --sides "$SIDES" --max-foreign "$MAX_FOREIGN" \
  --console "$CONSOLE" --notes "$TMP/notes.txt" | tee "$RESULTS/store-summary-$STAMP.txt"
echo "(saved: $RESULTS/store-summary-$STAMP.txt, store-$STAMP.jsonl, store-$STAMP.out)"
