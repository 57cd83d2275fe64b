#!/usr/bin/env bash
# Resumed TLS handshakes: tokens/s of our server with --tls-resumption tickets (a new connection
# per token, resuming the previous session) against our server's full handshakes and against the
# peer (oidc-provider, which resumes by default), in paired rounds of one invocation (issue 13 §7).
#
#   tests/bench/bench_resumption.sh                                   # ROUNDS=5 DURATION=6: ~6 min on a quiet box
#   ROUNDS=3 DURATION=4 CLIENTS=pki tests/bench/bench_resumption.sh   # quick
#
# Sides (SIDES, default "ours-resume ours-full peer-resume"):
#   ours-resume        authz serve --tls-resumption tickets, load generator mode "resume"
#   ours-full          authz serve (resumption off, the default), mode "handshake": full handshakes
#   peer-resume        the peer, 1 process, mode "resume"
#   ours-tickets-full  (optional) the tickets server in mode "handshake": what issuing a ticket costs
#   peer-full          (optional) the peer in mode "handshake"
# Every server is started once and stays up (idle when not measured). For each round and client,
# each side is measured once, back to back, the first side rotating from one cell to the next, so
# that the box's drift over minutes hits every side alike; a ratio is the median over the rounds of
# the ratio of two measurements of the same round. Before measuring, a probe (Python's ssl, three
# connections, each offering the previous session) shows which sides resume: ours-resume and
# peer-resume must, ours-full must not.
#
# Knobs: ROUNDS=5 DURATION=6 WARMUP=1 CONNS=16 CLIENTS="pki selfsigned" TLS=1.3 (or 1.2)
#        LOADGEN=go (Go's crypto/tls, as the other benchmarks' new-connection modes; c: OpenSSL, which
#        sends the CA certificate after the client's own, built from its --cacert: it is the trust
#        anchor, so its tickets resume too)
#        QUIET_WAIT=30 MAX_FOREIGN=15 RETRIES=2 (the attempt the other processes disturbed least is
#        kept) LOG_LEVEL=info VENV=.venv KEEP_TMP=0
#        PEER_DIR=../shared/bench/peer (read only: copied to PEER_WORK, default $TMPDIR/authz-peer-bench,
#        where npm ci, the peer PKI and the load generators are made; see peer_work.sh)
# Output: the probe, one line per measurement, then resumption_summary.py's table; results
# (git-ignored) in tests/bench/results/resumption-STAMP.jsonl.
set -euo pipefail

# shellcheck source=tests/bench/ours_server.sh
. "$(dirname "$0")/ours_server.sh"
# shellcheck source=tests/bench/peer_work.sh
. "$BENCH/peer_work.sh"

ROUNDS="${ROUNDS:-5}" DURATION="${DURATION:-6}" WARMUP="${WARMUP:-1}" CONNS="${CONNS:-16}"
CLIENTS="${CLIENTS:-pki selfsigned}" LOADGEN="${LOADGEN:-go}" TLS="${TLS:-1.3}"
QUIET_WAIT="${QUIET_WAIT:-30}" MAX_FOREIGN="${MAX_FOREIGN:-15}" RETRIES="${RETRIES:-2}"
SIDES="${SIDES:-ours-resume ours-full peer-resume}"
PEER_WORK="${PEER_WORK:-${TMPDIR:-/tmp}/authz-peer-bench}"
KEEP_TMP="${KEEP_TMP:-0}"

declare -A KIND=([ours-resume]=ours-tickets [ours-full]=ours-off [ours-tickets-full]=ours-tickets
                 [peer-resume]=peer [peer-full]=peer)
declare -A MODE=([ours-resume]=resume [ours-full]=handshake [ours-tickets-full]=handshake
                 [peer-resume]=resume [peer-full]=handshake)
for side in $SIDES; do
  [ -n "${KIND[$side]:-}" ] || { echo "SIDES: unknown side $side (${!KIND[*]})" >&2; exit 2; }
done
for client in $CLIENTS; do
  case "$client" in pki|selfsigned) ;; *) echo "CLIENTS: unknown client $client" >&2; exit 2 ;; esac
done
case "$TLS" in 1.2|1.3) ;; *) echo "TLS: 1.2 or 1.3, not $TLS" >&2; exit 2 ;; esac
TLS_FLAG="--tls${TLS/./}"   # the load generators' --tls12 / --tls13

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ROOT_TMP="$(mktemp -d /tmp/authz-bench-resumption.XXXXXX)"
declare -A PID_OF=() PORT_OF=()
PEER_PID=""
cleanup() {
  local kind
  for kind in ours-tickets ours-off; do
    if [ -n "${PID_OF[$kind]:-}" ]; then SERVER_PID=${PID_OF[$kind]} stop_ours; fi
  done
  if [ -n "$PEER_PID" ] && kill -0 "$PEER_PID" 2>/dev/null; then
    kill "$PEER_PID" 2>/dev/null || true; wait "$PEER_PID" 2>/dev/null || true; echo "peer stopped (pid $PEER_PID)"
  fi
  if [ "$KEEP_TMP" = 1 ]; then echo "kept $ROOT_TMP"; else rm -rf "$ROOT_TMP"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# --- prerequisites (idempotent) --------------------------------------------------------------------
install_bench_prerequisites
prepare_peer
PKI="$PEER_WORK/pki"   # every server and client below uses the copy's PKI
if [ "$LOADGEN" = go ] && [ -x "$PEER_WORK/loadgen-go-bin" ]; then LOADGEN_BIN="$PEER_WORK/loadgen-go-bin"
else LOADGEN_BIN="$PEER_WORK/loadgen"; fi

# --- the servers, each started once ------------------------------------------------------------------
kinds=" "
for side in $SIDES; do [[ "$kinds" == *" ${KIND[$side]} "* ]] || kinds+="${KIND[$side]} "; done
for kind in $kinds; do
  TMP="$ROOT_TMP/$kind"; mkdir -p "$TMP"
  OUR_PORT="$(free_port)"
  case "$kind" in
    ours-tickets) OUR_SERVE_ARGS="--tls-resumption tickets" start_ours > "$TMP/info"; PID_OF[$kind]=$SERVER_PID ;;
    ours-off) OUR_SERVE_ARGS="" start_ours > "$TMP/info"; PID_OF[$kind]=$SERVER_PID ;;
    peer)
      ( cd "$PEER_WORK" && exec env NODE_ENV=production PORT="$OUR_PORT" WORKERS=1 JWT_ALG=ES256 \
          node oidc-provider-server.mjs ) > "$TMP/peer-server.log" 2>&1 &
      PEER_PID=$!; PID_OF[$kind]=$PEER_PID
      wait_until_up "the peer" "$PEER_PID" "https://127.0.0.1:$OUR_PORT/.well-known/openid-configuration" \
        "$TMP/peer-server.log" 10
      echo "peer: oidc-provider $(cd "$PEER_WORK" && node -p "require('./node_modules/oidc-provider/package.json').version") node $(node --version) pid $PEER_PID port $OUR_PORT WORKERS=1 JWT_ALG=ES256" > "$TMP/info" ;;
  esac
  PORT_OF[$kind]=$OUR_PORT
  sed "s/^/$kind: /" "$TMP/info"
  SERVER_PID=""   # stopped by cleanup, through PID_OF
done

# --- which sides resume (a probe, not measured) -------------------------------------------------------
probe() { # port cert key client_id -> JSON list of [resumed, status] for three connections
  "$VENV/bin/python" - "$1" "$PKI/ca.crt" "$2" "$3" "$4" "$TLS" <<'PY'
import json, socket, ssl, sys
port, ca, cert, key, client_id, version = sys.argv[1:7]
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(cert, key)
context.minimum_version = context.maximum_version = (
    ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3)
body = f"grant_type=client_credentials&client_id={client_id}"
request = (f"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()
session, outcomes = None, []
for _ in range(3):
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
        tls.sendall(request)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        outcomes.append([tls.session_reused, int(answer.split(b" ", 2)[1])])
        session = tls.session
print(json.dumps(outcomes))
PY
}
client_files() { # client -> "id crt"
  if [ "$1" = pki ]; then echo "bench-pki client"; else echo "bench-selfsigned selfsigned"; fi
}
echo
for side in $SIDES; do
  for client in $CLIENTS; do
    read -r id crt <<< "$(client_files "$client")"
    outcome="$(probe "${PORT_OF[${KIND[$side]}]}" "$PKI/$crt.crt" "$PKI/$crt.key" "$id")"
    echo "probe $side $client: [resumed, HTTP status] x3 = $outcome"
    python3 - "$side" "$outcome" "${MODE[$side]}" "${KIND[$side]}" <<'PY'
import json, sys
side, outcome, mode, kind = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
if any(status != 200 for _, status in outcome):
    sys.exit(f"{side}: a probe request got no token")
resumes = [resumed for resumed, _ in outcome[1:]]
if kind == "ours-off" and any(resumes):
    sys.exit(f"{side}: resumption is off, yet a session was resumed")
if mode == "resume" and not all(resumes):
    sys.exit(f"{side}: the server did not resume the previous session: the 'resume' measurement would be full handshakes")
PY
  done
done

# --- paired rounds ------------------------------------------------------------------------------------
STAMP="$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS"
OUT="$RESULTS/resumption-$STAMP.jsonl"
: > "$OUT"
read -r -a side_list <<< "$SIDES"
cell=0
echo
echo "knobs: ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS CLIENTS=\"$CLIENTS\" TLS=$TLS LOADGEN=$LOADGEN_BIN SIDES=\"$SIDES\" MAX_FOREIGN=$MAX_FOREIGN"
for round in $(seq 1 "$ROUNDS"); do
  for client in $CLIENTS; do
    read -r id crt <<< "$(client_files "$client")"
    n=${#side_list[@]}
    for i in $(seq 0 $((n - 1))); do
      side=${side_list[$(((i + cell) % n))]}
      kind=${KIND[$side]}
      best="" best_foreign=""
      for try in $(seq 0 "$RETRIES"); do
        python3 "$PEER_WORK/measure.py" quiet "$QUIET_WAIT" 10 > /dev/null
        result="$(python3 "$PEER_WORK/measure.py" run "${PID_OF[$kind]}" "$client" -- "$LOADGEN_BIN" \
          -u "https://127.0.0.1:${PORT_OF[$kind]}/token" --cert "$PKI/$crt.crt" --key "$PKI/$crt.key" \
          --cacert "$PKI/ca.crt" -b "grant_type=client_credentials&client_id=$id" --expect '"access_token"' \
          -m "${MODE[$side]}" "$TLS_FLAG" -c "$CONNS" -d "$DURATION" -w "$WARMUP" --json | sed -n 's/^RESULT //p')"
        foreign="$(printf '%s' "$result" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["foreign_cpu_pct"]))')"
        if [ -z "$best" ] || [ "$foreign" -lt "$best_foreign" ]; then best=$result; best_foreign=$foreign; fi
        [ "$foreign" -le "$MAX_FOREIGN" ] && break
        [ "$try" = "$RETRIES" ] || echo "   round $round $client $side: other processes used $foreign% of a core: measured again"
      done
      printf '%s' "$best" | python3 -c 'import json,sys; r=json.load(sys.stdin); r.update(side=sys.argv[1], round=int(sys.argv[2])); print(json.dumps(r))' \
        "$side" "$round" >> "$OUT"
      printf '%s' "$best" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("round %s %-10s %-17s %-9s %6.0f tok/s  p50 %6.2f ms  p99 %6.2f ms  server %3.0f%% of a core  errors %s  foreign %s%% of a core" % (sys.argv[2], r["label"], sys.argv[1], r["mode"], r["rps"], r["p50_ms"], r["p99_ms"], r["server_cpu_pct"], r["errors"], r["foreign_cpu_pct"]))' \
        "$side" "$round"
    done
    cell=$((cell + 1))
  done
done

echo
echo "TLS $TLS, $CONNS connections, a new connection per token"
"$VENV/bin/python" "$BENCH/resumption_summary.py" "$OUT" --sides "$SIDES" | tee "$RESULTS/resumption-summary-$STAMP.txt"
echo "(saved: $OUT, $RESULTS/resumption-summary-$STAMP.txt)"
