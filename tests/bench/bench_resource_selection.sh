#!/usr/bin/env bash
# Token endpoint with RFC 8707 resource selection vs without, one server, one worker, keep-alive,
# in one invocation (issue target: with >= 0.95 x without):
#
#   tests/bench/bench_resource_selection.sh            # ROUNDS=5 DURATION=8 CONNS=16
#
# One `authz serve` on the peer harness's PKI; two clients with the same certificate:
# bench-plain (no resource server: the default audience) and bench-resource (allowed the
# resource server https://api.bench.example, asked for with resource= on every request). The
# C load generator alternates between them, round after round (ABAB...), and the script
# prints each round's tokens/s and the median ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${ROUNDS:-5}"; DURATION="${DURATION:-8}"; WARMUP="${WARMUP:-2}"; CONNS="${CONNS:-16}"
PEER_DIR="${PEER_DIR:-../shared/bench/peer}"
PEER_DIR="$(cd "$PEER_DIR" && pwd)"
[ -x "$PEER_DIR/loadgen" ] || (cd "$PEER_DIR" && cc -O2 -o loadgen loadgen.c -lssl -lcrypto -lpthread)
[ -f "$PEER_DIR/pki/ca.crt" ] || (cd "$PEER_DIR" && ./make-pki.sh)
TMP="$(mktemp -d /tmp/authz-resource-bench.XXXXXX)"
PORT="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
API="https://api.bench.example"
cleanup() { [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
A=(.venv/bin/authz)
"${A[@]}" resources add "$API" --scope "read write" --data-dir "$TMP/data" 2>/dev/null
for id in bench-plain bench-resource; do
  extra=(); [ "$id" = bench-resource ] && extra=(--resource "$API")
  "${A[@]}" clients add "$id" --auth-method tls_client_auth --subject-dn "CN=bench-client,O=Bench" \
    --scope "read write" "${extra[@]}" --data-dir "$TMP/data" 2>/dev/null
done
AUTHZ_LOG_LEVEL=warning "${A[@]}" serve --tls-cert "$PEER_DIR/pki/server.crt" --tls-key "$PEER_DIR/pki/server.key" \
  --trust-anchor "$PEER_DIR/pki/ca.crt" --port "$PORT" --data-dir "$TMP/data" --log-format json \
  > "$TMP/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -s -o /dev/null --cacert "$PEER_DIR/pki/ca.crt" "https://127.0.0.1:$PORT/jwks" && break; sleep 0.1; done
run() {  # $1 body -> tokens/s
  "$PEER_DIR/loadgen" -u "https://127.0.0.1:$PORT/token" --cert "$PEER_DIR/pki/client.crt" \
    --key "$PEER_DIR/pki/client.key" --cacert "$PEER_DIR/pki/ca.crt" -b "$1" --expect '"access_token"' \
    -m keepalive -c "$CONNS" -d "$DURATION" -w "$WARMUP" --json 2>/dev/null \
    | .venv/bin/python -c 'import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); assert not r.get("errors"), r; print(round(r["rps"]))'
}
PLAIN="grant_type=client_credentials&client_id=bench-plain"
WITH="grant_type=client_credentials&client_id=bench-resource&resource=https%3A%2F%2Fapi.bench.example"
# The first token of each proves the audience, once.
for body in "$PLAIN" "$WITH"; do
  curl -s --cacert "$PEER_DIR/pki/ca.crt" --cert "$PEER_DIR/pki/client.crt" --key "$PEER_DIR/pki/client.key" \
    -d "$body" "https://127.0.0.1:$PORT/token" | .venv/bin/python -c '
import base64, json, sys
token = json.load(sys.stdin)["access_token"].split(".")[1]
print("  aud:", json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["aud"])'
done
echo "| round | without resource tok/s | with resource tok/s | ratio |"
echo "|---|---|---|---|"
ratios=()
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then a=$(run "$PLAIN"); b=$(run "$WITH"); else b=$(run "$WITH"); a=$(run "$PLAIN"); fi
  ratio=$(.venv/bin/python -c "print(f'{$b/$a:.3f}')")
  ratios+=("$ratio")
  echo "| $round | $a | $b | $ratio |"
done
.venv/bin/python -c "
import statistics, sys
r = [float(x) for x in sys.argv[1:]]
print(f'median ratio with/without: {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f}); target >= 0.95:',
      'PASS' if statistics.median(r) >= 0.95 else 'FAIL')" "${ratios[@]}"
