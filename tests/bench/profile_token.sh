#!/usr/bin/env bash
# Where does our server's CPU per token go? Starts our server exactly as run_token_bench.sh does
# (1 worker, info logging, peer PKI), puts load on it with the peer's C load generator,
# samples it with py-spy, prints a summary (cost areas in µs/token, self and inclusive hot spots).
#
#   tests/bench/profile_token.sh                     # CLIENT=pki DURATION=20 CONNS=16
#   CLIENT=selfsigned FORMAT=speedscope tests/bench/profile_token.sh
#
# Knobs: CLIENT=pki|selfsigned  MODE=keepalive|handshake  DURATION=20 (load seconds; py-spy samples DURATION-4 of them)
#   CONNS=16  RATE=250 (samples/s)  FORMAT=raw|speedscope  NATIVE=0 (1: py-spy --native, blocking;
#   it over-weights syscalls, see README)  LOG_LEVEL=info  PEER_DIR  OUR_PORT
# Output: tests/bench/results/profile-<client>-<mode>-<stamp>.{raw|speedscope.json} and .txt (the summary)
# The profile costs throughput (~5 % with the default non-blocking sampling): it is not a benchmark.
set -euo pipefail

# Paths and defaults shared with the other benchmark scripts; start_ours / stop_ours.
# shellcheck source=tests/bench/ours_server.sh
. "$(dirname "$0")/ours_server.sh"
CLIENT="${CLIENT:-pki}"; MODE="${MODE:-keepalive}"; DURATION="${DURATION:-20}"; CONNS="${CONNS:-16}"; RATE="${RATE:-250}"
FORMAT="${FORMAT:-raw}"; NATIVE="${NATIVE:-0}"
OUR_PORT="${OUR_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
[ "$DURATION" -ge 8 ] || { echo "DURATION must be >= 8" >&2; exit 2; }

[ -x "$VENV/bin/py-spy" ] || "$VENV/bin/pip" install -q py-spy
[ -f "$PKI/client.crt" ] || (cd "$PEER_DIR" && ./make-pki.sh)
if [ ! -x "$PEER_DIR/loadgen" ] || [ "$PEER_DIR/loadgen.c" -nt "$PEER_DIR/loadgen" ]; then
  (cd "$PEER_DIR" && cc -O2 -o loadgen loadgen.c -lssl -lcrypto -lpthread)
fi
if [ "$CLIENT" = pki ]; then id=bench-pki; crt=client; else id=bench-selfsigned; crt=selfsigned; fi

TMP="$(mktemp -d /tmp/authz-profile.XXXXXX)"
LOADGEN_PID=""
cleanup() {
  if [ -n "$LOADGEN_PID" ]; then kill "$LOADGEN_PID" 2>/dev/null || true; wait "$LOADGEN_PID" 2>/dev/null || true; fi
  stop_ours
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

mkdir -p "$RESULTS"
OUT="$RESULTS/profile-$CLIENT-$MODE-$(date +%Y%m%d-%H%M%S)"
start_ours
"$PEER_DIR/loadgen" -u "https://127.0.0.1:$OUR_PORT/token" --cert "$PKI/$crt.crt" --key "$PKI/$crt.key" \
  --cacert "$PKI/ca.crt" -b "grant_type=client_credentials&client_id=$id" --expect '"access_token"' \
  -m "$MODE" -c "$CONNS" -d "$DURATION" -w 1 > "$TMP/loadgen.txt" &
LOADGEN_PID=$!
sleep 2
cpu() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
tokens() { grep -c '"token_issued"' "$TMP/authz-server.log" || true; }
c0=$(cpu); n0=$(tokens)
spy=("$VENV/bin/py-spy" record --pid "$SERVER_PID" --rate "$RATE" --duration $((DURATION - 4)))
if [ "$NATIVE" = 1 ]; then spy+=(--native); else spy+=(--nonblocking); fi
if [ "$FORMAT" = speedscope ]; then PROF="$OUT.speedscope.json"; else PROF="$OUT.raw"; fi
"${spy[@]}" --format "$FORMAT" -o "$PROF" > "$TMP/py-spy.txt" 2>&1 || { cat "$TMP/py-spy.txt" >&2; exit 1; }
c1=$(cpu); n1=$(tokens)
wait "$LOADGEN_PID" || true; LOADGEN_PID=""
cat "$TMP/loadgen.txt"
hz=$(getconf CLK_TCK)
us_per_token=$(python3 -c "print(round(($c1 - $c0) / $hz * 1e6 / max(1, $n1 - $n0), 1))")
echo "server CPU while sampled: $(( (c1 - c0) )) ticks for $((n1 - n0)) tokens = $us_per_token µs/token (includes py-spy's cost)"
"$VENV/bin/python" "$BENCH/profile_summary.py" "$PROF" --us-per-token "$us_per_token" | tee "$OUT.txt"
echo "(saved: $PROF, $OUT.txt; speedscope files open at https://www.speedscope.app)"
