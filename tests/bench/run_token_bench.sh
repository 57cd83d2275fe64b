#!/usr/bin/env bash
# Token endpoint benchmark, side by side with the peer AS (panva oidc-provider), one worker each,
# same load generator, same knobs, in one invocation:
#
#   tests/bench/run_token_bench.sh                  # RUNS=3 DURATION=10, ~8-10 min on an idle box
#   RUNS=1 DURATION=5 tests/bench/run_token_bench.sh
#
# Steps: peer prerequisites (idempotent) -> peer PKI -> OUR server (1 worker, fresh temp data dir,
# bench-pki + bench-selfsigned registered, peer PKI) and the peer, both kept running -> for each
# run, client and mode: ../shared/bench/peer/run-peer-bench.sh (RUNS=1) against one and then the
# other (TARGET_URL/TARGET_PID), the side that goes first alternating -> one table
# (tests/bench/compare.py) with ratios of paired runs and PASS/FAIL per target.
# See tests/bench/README.md.
#
# Knobs (environment; defaults are run-peer-bench.sh's and are passed to BOTH runs):
#   RUNS=3 DURATION=10 WARMUP=2 CONNS=16 CONNS_KEEPALIVE CONNS_HANDSHAKE
#   MODES="keepalive handshake" CLIENTS="pki selfsigned" LOADGEN_KEEPALIVE=c LOADGEN_HANDSHAKE=go
#   QUIET_WAIT=60 MAX_FOREIGN=15 RETRIES=3
# This script's own:
#   PEER_DIR=../shared/bench/peer   OUR_PORT / PEER_PORT (default: free loopback ports)
#   LOG_LEVEL=info (our server; the product logs one JSON line per token at info)
#   ORDER=interleaved   each run of ours is paired with a run of the peer taken right before or
#                       after it; "ours peer" / "peer ours" measure one whole side, then the other
#   KEEP_TMP=0   1 keeps our server's temp data dir and log
set -euo pipefail

# Paths and defaults shared with the other benchmark scripts; start_ours / stop_ours.
# shellcheck source=tests/bench/ours_server.sh
. "$(dirname "$0")/ours_server.sh"
ORDER="${ORDER:-interleaved}"
KEEP_TMP="${KEEP_TMP:-0}"

# Same knobs for both runs: fix the defaults here and export them.
export RUNS="${RUNS:-3}" DURATION="${DURATION:-10}" WARMUP="${WARMUP:-2}" CONNS="${CONNS:-16}"
export CONNS_KEEPALIVE="${CONNS_KEEPALIVE:-$CONNS}" CONNS_HANDSHAKE="${CONNS_HANDSHAKE:-$CONNS}"
export MODES="${MODES:-keepalive handshake}" CLIENTS="${CLIENTS:-pki selfsigned}"
export LOADGEN_KEEPALIVE="${LOADGEN_KEEPALIVE:-c}" LOADGEN_HANDSHAKE="${LOADGEN_HANDSHAKE:-go}"
export QUIET_WAIT="${QUIET_WAIT:-60}" MAX_FOREIGN="${MAX_FOREIGN:-15}" RETRIES="${RETRIES:-3}"
export PKI_CLIENT_ID=bench-pki SELF_CLIENT_ID=bench-selfsigned
# One worker each, and the algorithm our server signs with.
export WORKERS=1 JWT_ALG=ES256
unset TARGET_URL TARGET_PID

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OUR_PORT="${OUR_PORT:-$(free_port)}"
PEER_PORT="${PEER_PORT:-$(free_port)}"

TMP="$(mktemp -d /tmp/authz-bench.XXXXXX)"
SAMPLER_PID=""
PEER_PID=""
cleanup() {
  stop_ours
  stop_peer
  if [ -n "$SAMPLER_PID" ]; then kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; fi
  if [ "$KEEP_TMP" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# --- prerequisites (idempotent) ---------------------------------------------------------------
install_bench_prerequisites
[ -d "$PEER_DIR/node_modules/oidc-provider" ] || (cd "$PEER_DIR" && npm ci --no-audit --no-fund)
[ -f "$PKI/client.crt" ] || (cd "$PEER_DIR" && ./make-pki.sh)
mkdir -p "$RESULTS"
STAMP="$(date +%Y%m%d-%H%M%S)"

jsonl_of() { sed -n 's/^results: //p' "$1" | tail -1; }

# After our server's last run: its peak RSS, stop it, summarise its log.
finish_ours() {
  # VmHWM = peak resident set of the server process over its whole life.
  awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status" > "$TMP/ours.hwm_kb"
  awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" > "$TMP/ours.rss_kb"
  stop_ours
  {
    cat "$TMP/ours.info"
    printf 'tokens logged (token_issued lines): %s\n' "$(grep -c '"token_issued"' "$TMP/authz-server.log" || true)"
    printf 'log size: %s bytes\n' "$(stat -c %s "$TMP/authz-server.log")"
    echo "warnings/errors in the log (first 10):"
    grep -E '"level": "(warning|error|critical)"|Traceback|ERROR' "$TMP/authz-server.log" | head -10 || echo "  (none)"
  } > "$RESULTS/ours-$STAMP.server-log-summary.txt"
}

run_ours() {
  start_ours > "$TMP/ours.info"; cat "$TMP/ours.info"
  TARGET_URL="https://127.0.0.1:$OUR_PORT/token" TARGET_PID="$SERVER_PID" \
    "$PEER_DIR/run-peer-bench.sh" 2>&1 | tee "$TMP/ours.out"
  local rel; rel="$(jsonl_of "$TMP/ours.out")"
  [ -n "$rel" ] || { echo "no results file from the run against our server" >&2; exit 1; }
  cp "$PEER_DIR/$rel" "$RESULTS/ours-$STAMP.jsonl"; cp "$TMP/ours.out" "$RESULTS/ours-$STAMP.out"
  finish_ours
}

# The peer for a whole interleaved invocation, started the way run-peer-bench.sh starts it
# (WORKERS=1: the node process is the server). Sets PEER_PID.
start_peer() {
  ( cd "$PEER_DIR" && exec env NODE_ENV=production PORT="$PEER_PORT" node oidc-provider-server.mjs ) \
    > "$TMP/peer-server.log" 2>&1 &
  PEER_PID=$!
  wait_until_up "the peer" "$PEER_PID" "https://127.0.0.1:$PEER_PORT/.well-known/openid-configuration" \
    "$TMP/peer-server.log" 10 || return 1
  echo "peer: oidc-provider $(cd "$PEER_DIR" && node -p "require('./node_modules/oidc-provider/package.json').version") node $(node --version) pid $PEER_PID port $PEER_PORT JWT_ALG=$JWT_ALG WORKERS=$WORKERS"
}

stop_peer() {
  if [ -n "$PEER_PID" ] && kill -0 "$PEER_PID" 2>/dev/null; then
    kill "$PEER_PID" 2>/dev/null || true; wait "$PEER_PID" 2>/dev/null || true
    echo "peer stopped (pid $PEER_PID)"
  fi
  PEER_PID=""
}

# One measurement (RUNS=1, one client, one mode) of one side, appended to that side's results.
bench_cell() { # side client mode
  local side=$1 client=$2 mode=$3 port pid rel
  if [ "$side" = ours ]; then port=$OUR_PORT; pid=$SERVER_PID; else port=$PEER_PORT; pid=$PEER_PID; fi
  echo; echo "--------------- $side: client=$client mode=$mode ---------------"
  TARGET_URL="https://127.0.0.1:$port/token" TARGET_PID="$pid" RUNS=1 CLIENTS="$client" MODES="$mode" \
    "$PEER_DIR/run-peer-bench.sh" 2>&1 | tee "$TMP/cell.out"
  rel="$(jsonl_of "$TMP/cell.out")"
  [ -n "$rel" ] || { echo "no results file from the $side run" >&2; exit 1; }
  cat "$PEER_DIR/$rel" >> "$RESULTS/$side-$STAMP.jsonl"; cat "$TMP/cell.out" >> "$RESULTS/$side-$STAMP.out"
}

# Both servers up; each run of one side is paired with the other's run of the same cell, taken
# right before or after it, so that the box's drift over the invocation (±15-25 % here) hits both.
# Who goes first alternates from cell to cell and from run to run.
run_interleaved() {
  start_ours > "$TMP/ours.info"; cat "$TMP/ours.info"
  start_peer > "$TMP/peer.info"; cat "$TMP/peer.info"
  cp "$TMP/peer.info" "$RESULTS/peer-$STAMP.out"
  local run client mode cell=0 first second
  for run in $(seq 1 "$RUNS"); do
    for client in $CLIENTS; do
      for mode in $MODES; do
        if [ $(((run + cell) % 2)) = 1 ]; then first=ours second=peer; else first=peer second=ours; fi
        echo; echo "=============== run $run/$RUNS client=$client mode=$mode: $first, then $second ==============="
        bench_cell "$first" "$client" "$mode"
        bench_cell "$second" "$client" "$mode"
        cell=$((cell + 1))
      done
    done
  done
  awk '/^VmHWM:/ {print $2}' "/proc/$PEER_PID/status" > "$TMP/peer.hwm_kb"
  stop_peer
  finish_ours
}

run_peer() {
  # Peak RSS of the peer's node process, sampled (it is started and stopped by run-peer-bench.sh).
  (
    max=0
    while :; do
      for p in $(pgrep -f 'oidc-provider-server.mjs' || true); do
        if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "PORT=$PEER_PORT"; then
          h=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
          [ "${h:-0}" -gt "$max" ] && max=$h && echo "$max" > "$TMP/peer.hwm_kb"
        fi
      done
      sleep 2
    done
  ) &
  SAMPLER_PID=$!
  PORT="$PEER_PORT" "$PEER_DIR/run-peer-bench.sh" 2>&1 | tee "$TMP/peer.out"
  kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
  local rel; rel="$(jsonl_of "$TMP/peer.out")"
  [ -n "$rel" ] || { echo "no results file from the peer run" >&2; exit 1; }
  cp "$PEER_DIR/$rel" "$RESULTS/peer-$STAMP.jsonl"; cp "$TMP/peer.out" "$RESULTS/peer-$STAMP.out"
}

echo "knobs: RUNS=$RUNS DURATION=$DURATION WARMUP=$WARMUP CONNS_KEEPALIVE=$CONNS_KEEPALIVE CONNS_HANDSHAKE=$CONNS_HANDSHAKE MODES=\"$MODES\" CLIENTS=\"$CLIENTS\" LOADGEN_KEEPALIVE=$LOADGEN_KEEPALIVE LOADGEN_HANDSHAKE=$LOADGEN_HANDSHAKE order=\"$ORDER\""
if [ "$ORDER" = interleaved ]; then
  run_interleaved
else
  for side in $ORDER; do
    echo; echo "=============== $side ==============="
    case "$side" in
      ours) run_ours ;;
      peer) run_peer ;;
      *) echo "ORDER: unknown side $side (interleaved, \"ours peer\" or \"peer ours\")" >&2; exit 2 ;;
    esac
  done
fi

kb() { [ -s "$1" ] && cat "$1" || echo 0; }
echo
"$VENV/bin/python" "$BENCH/compare.py" \
  --ours "$RESULTS/ours-$STAMP.jsonl" --peer "$RESULTS/peer-$STAMP.jsonl" \
  --ours-hwm-kb "$(kb "$TMP/ours.hwm_kb")" --ours-rss-kb "$(kb "$TMP/ours.rss_kb")" \
  --peer-hwm-kb "$(kb "$TMP/peer.hwm_kb")" --max-foreign "$MAX_FOREIGN" --order "$ORDER" \
  --server-log-summary "$RESULTS/ours-$STAMP.server-log-summary.txt" \
  --ours-out "$RESULTS/ours-$STAMP.out" --peer-out "$RESULTS/peer-$STAMP.out" \
  | tee "$RESULTS/summary-$STAMP.txt"
echo "(saved: $RESULTS/summary-$STAMP.txt, ours-$STAMP.jsonl, peer-$STAMP.jsonl)"
