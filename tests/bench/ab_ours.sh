#!/usr/bin/env bash
# Paired A/B of two versions of OUR server: does a change make the token endpoint cheaper?
#
#   tests/bench/ab_ours.sh                   # A = HEAD, B = the working tree (uncommitted changes)
#   tests/bench/ab_ours.sh HEAD~1 HEAD       # any two git revisions, or "worktree"
#   PAIRS=10 MODES="keepalive handshake" CLIENTS="pki selfsigned" tests/bench/ab_ours.sh
#   MODES=handshake CLIENTS="pki selfsigned" tests/bench/ab_ours.sh floor HEAD
#                                            # our server against the floor of its serving stack
#   ARGS_B="--metrics-listen 127.0.0.1:@FREE_PORT@" SCRAPE=15 tests/bench/ab_ours.sh worktree worktree
#                                            # the same code, metrics off (A) and on (B, scraped every 15 s)
#
# Both servers run at once (one worker each, the peer PKI, the same two clients as
# run_token_bench.sh) and take turns under the peer's load generators: for each pair, one
# measurement of A and one of B, right after each other, the first side alternating. On this
# shared machine a server's speed drifts 15-25 % within minutes, which swamps a 5-10 % change
# between two separate runs; pairs taken seconds apart do not suffer from it.
# ab_summary.py prints each pair and the medians of B/A for req/s and for server CPU per token.
#
# Knobs: PAIRS=6 DURATION=6 WARMUP=1 CONNS=16 MODES=keepalive CLIENTS=pki QUIET_WAIT=30
#        MAX_FOREIGN=15 RETRIES=3 LOADGEN_KEEPALIVE=c LOADGEN_HANDSHAKE=go LOG_LEVEL=info
# "floor" instead of a revision runs tls_floor_server.py: the same uvloop and TLS context, a canned
# reply, no HTTP framework and no OAuth; what no server on this stack can do without.
# Revisions are exported with `git archive` and run from a temporary directory with the
# project's venv, so a revision whose dependencies differ from the venv's needs its own VENV.
# ARGS_A / ARGS_B: more `authz serve` options for side A / B; @FREE_PORT@ becomes a free port.
# SCRAPE=S: while measuring, GET /metrics of each side that has --metrics-listen every S seconds,
# as Prometheus would (the cost of a scrape is part of what is measured).
set -euo pipefail

# shellcheck source=tests/bench/ours_server.sh
. "$(dirname "$0")/ours_server.sh"

REV_A="${1:-HEAD}"
REV_B="${2:-worktree}"
PAIRS="${PAIRS:-6}"
export RUNS=1 DURATION="${DURATION:-6}" WARMUP="${WARMUP:-1}" CONNS="${CONNS:-16}"
export QUIET_WAIT="${QUIET_WAIT:-30}" MAX_FOREIGN="${MAX_FOREIGN:-15}" RETRIES="${RETRIES:-3}"
export LOADGEN_KEEPALIVE="${LOADGEN_KEEPALIVE:-c}" LOADGEN_HANDSHAKE="${LOADGEN_HANDSHAKE:-go}"
export PKI_CLIENT_ID=bench-pki SELF_CLIENT_ID=bench-selfsigned
MODES="${MODES:-keepalive}"
CLIENTS="${CLIENTS:-pki}"
unset TARGET_URL TARGET_PID

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ROOT_TMP="$(mktemp -d /tmp/authz-ab.XXXXXX)"
PID_A="" PID_B=""
cleanup() {
  for pid in ${SCRAPER_PIDS:-}; do kill "$pid" 2>/dev/null || true; done
  for pid in $PID_A $PID_B; do SERVER_PID=$pid stop_ours; done
  rm -rf "$ROOT_TMP"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

[ -f "$PKI/client.crt" ] || (cd "$PEER_DIR" && ./make-pki.sh)

# source_of REV DIR -> the directory to run REV from (the repository itself for "worktree")
source_of() {
  if [ "$1" = worktree ]; then echo "$REPO"; return; fi
  local commit; commit="$(git -C "$REPO" rev-parse --verify "$1^{commit}")"
  mkdir -p "$2"; git -C "$REPO" archive "$commit" authz resource | tar -x -C "$2"
  echo "$2"
}
label_of() { # rev side
  local args_var="ARGS_$2" suffix=""
  [ -n "${!args_var:-}" ] && suffix=" with ${!args_var}"
  echo "$(label_of_rev "$1")$suffix"
}
label_of_rev() {
  if [ "$1" = floor ]; then echo "floor: tls_floor_server.py (uvloop + authz.tls context, canned reply)"
  elif [ "$1" = worktree ]; then echo "working tree of $(git -C "$REPO" rev-parse --short HEAD)"
  else echo "$1 = $(git -C "$REPO" rev-parse --short "$1")"; fi
}

start_floor() { # -> SERVER_PID; needs TMP and OUR_PORT
  env PYTHONPATH="$REPO" "$VENV/bin/python" -P "$BENCH/tls_floor_server.py" --port "$OUR_PORT" \
    --tls-cert "$PKI/server.crt" --tls-key "$PKI/server.key" > "$TMP/floor-server.log" 2>&1 &
  SERVER_PID=$!
  wait_until_up "the floor server" "$SERVER_PID" "https://127.0.0.1:$OUR_PORT/" "$TMP/floor-server.log" 30 || return 1
  echo "floor server pid $SERVER_PID port $OUR_PORT"
}

start_side() { # side rev -> sets PID_<side>, PORT_<side>
  local side=$1 rev=$2
  TMP="$ROOT_TMP/$side"; mkdir -p "$TMP"
  OUR_PORT="$(free_port)"
  if [ "$rev" = floor ]; then
    start_floor > "$TMP/info"; sed "s/^/$side: /" "$TMP/info"
    printf -v "PID_$side" '%s' "$SERVER_PID"; printf -v "PORT_$side" '%s' "$OUR_PORT"
    return
  fi
  local src; src="$(source_of "$rev" "$ROOT_TMP/src-$side")"
  local args_var="ARGS_$side" args
  args="${!args_var:-}"
  while [[ "$args" == *@FREE_PORT@* ]]; do args="${args/@FREE_PORT@/$(free_port)}"; done
  printf -v "ARGS_$side" '%s' "$args"
  # The server must import authz from src, not the venv's editable install of the repository.
  local found; found="$(env PYTHONPATH="$src:$src/resource" "$VENV/bin/python" -P -c 'import authz, authz_resource; print(authz.__file__, authz_resource.__file__)')"
  [ "$found" = "$src/authz/__init__.py $src/resource/authz_resource/__init__.py" ] || { echo "$side: authz would come from $found, not $src" >&2; exit 1; }
  OUR_SRC="$src" OUR_SRC_LABEL="$(label_of_rev "$rev")" OUR_EXTRA_ARGS="$args" start_ours > "$TMP/info"
  sed "s/^/$side: /" "$TMP/info"
  printf -v "PID_$side" '%s' "$SERVER_PID"; printf -v "PORT_$side" '%s' "$OUR_PORT"
}
start_side A "$REV_A"
start_side B "$REV_B"

# SCRAPE: a scraper per side with a metrics listener, stopped with the script.
SCRAPER_PIDS=""
if [ -n "${SCRAPE:-}" ]; then
  for side in A B; do
    args_var="ARGS_$side"
    listen="$(sed -n 's/.*--metrics-listen[ =]\([^ ]*\).*/\1/p' <<< "${!args_var:-}")"
    [ -n "$listen" ] || continue
    (while sleep "$SCRAPE"; do curl -s -o /dev/null "http://$listen/metrics"; done) &
    SCRAPER_PIDS="$SCRAPER_PIDS $!"
    echo "side $side: /metrics scraped every $SCRAPE s at http://$listen/metrics"
  done
fi

OUT="$ROOT_TMP/results.jsonl"
: > "$OUT"
pair=0
for run in $(seq 1 "$PAIRS"); do
  for client in $CLIENTS; do
    for mode in $MODES; do
      # Alternate per measured cell (run + pair was always odd with a single client and mode).
      if [ $((pair % 2)) = 0 ]; then order="A B"; else order="B A"; fi
      for side in $order; do
        port_var="PORT_$side"; pid_var="PID_$side"
        echo "== pair $run/$PAIRS client=$client mode=$mode side $side"
        TARGET_URL="https://127.0.0.1:${!port_var}/token" TARGET_PID="${!pid_var}" CLIENTS="$client" MODES="$mode" \
          "$PEER_DIR/run-peer-bench.sh" > "$ROOT_TMP/cell.out" 2>&1 || { cat "$ROOT_TMP/cell.out"; exit 1; }
        rel="$(sed -n 's/^results: //p' "$ROOT_TMP/cell.out" | tail -1)"
        [ -n "$rel" ] || { cat "$ROOT_TMP/cell.out"; echo "no results file" >&2; exit 1; }
        python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); r.update(side=sys.argv[2], pair=int(sys.argv[3])); print(json.dumps(r))' \
          "$PEER_DIR/$rel" "$side" "$run" >> "$OUT"
        grep -E "^\s+requests=|WARNING|discarded" "$ROOT_TMP/cell.out" || true
      done
      pair=$((pair + 1))
    done
  done
done

echo
"$VENV/bin/python" "$BENCH/ab_summary.py" "$OUT" --a "$(label_of "$REV_A" A)" --b "$(label_of "$REV_B" B)"
mkdir -p "$RESULTS"; cp "$OUT" "$RESULTS/ab-$(date +%Y%m%d-%H%M%S).jsonl"
