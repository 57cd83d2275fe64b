#!/usr/bin/env bash
# Keep-alive tokens/s with CRL checking on against off, in one run, as a ratio (issue 13's target:
# on >= 0.9 x off).
#
#   tests/bench/bench_revocation.sh                        # PAIRS=6 DURATION=6: about 3 minutes on a quiet box
#   PAIRS=3 DURATION=4 tests/bench/bench_revocation.sh     # quick
#   CRL_ENTRIES=100000 tests/bench/bench_revocation.sh     # a large CRL (the hot path does not depend on it)
#
# Two servers run at once, the same code and PKI, one worker each: A without revocation checking,
# B with --revocation-check crl (hard-fail), its client certificate naming a CRL distribution point
# served by a local HTTP server (a CRL of CRL_ENTRIES revoked serials, signed by the CA). They take
# turns under the peer's C load generator (keep-alive, CONNS connections, the tls_client_auth
# client), pair by pair, the first side alternating, as ab_ours.sh does: on this shared machine a
# server's speed drifts 15-25 % within minutes, so only runs taken seconds apart are compared.
# Before measuring, B must have loaded the CRL and must refuse a revoked certificate of the same
# subject: the checking measured is really on.
#
# Knobs: PAIRS=6 DURATION=6 WARMUP=1 CONNS=16 CRL_ENTRIES=10000 QUIET_WAIT=30 MAX_FOREIGN=15 RETRIES=3
#        LOG_LEVEL=info VENV=.venv PEER_DIR=../shared/bench/peer (for loadgen.c and measure.py)
# Own PKI, load generator build, data dirs and logs in a temporary directory (KEEP_TMP=1 keeps it).
set -euo pipefail

# shellcheck source=tests/bench/ours_server.sh
. "$(dirname "$0")/ours_server.sh"

PAIRS="${PAIRS:-6}" DURATION="${DURATION:-6}" WARMUP="${WARMUP:-1}" CONNS="${CONNS:-16}"
CRL_ENTRIES="${CRL_ENTRIES:-10000}" QUIET_WAIT="${QUIET_WAIT:-30}" MAX_FOREIGN="${MAX_FOREIGN:-15}"
RETRIES="${RETRIES:-3}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ROOT_TMP="$(mktemp -d /tmp/authz-bench-revocation.XXXXXX)"
PID_A="" PID_B="" CRL_SERVER_PID=""
cleanup() {
  for pid in $PID_A $PID_B; do SERVER_PID=$pid stop_ours; done
  if [ -n "$CRL_SERVER_PID" ]; then kill "$CRL_SERVER_PID" 2>/dev/null || true; wait "$CRL_SERVER_PID" 2>/dev/null || true; fi
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $ROOT_TMP"; else rm -rf "$ROOT_TMP"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# --- PKI: the peer's layout (ca, server, client, selfsigned) with a CA key that signs a CRL ----------
PKI="$ROOT_TMP/pki"   # ours_server.sh's start_ours reads the server and self-signed certificates here
mkdir -p "$PKI" "$ROOT_TMP/www"
CRL_PORT="$(free_port)"
CRL_URL="http://127.0.0.1:$CRL_PORT/ca.crl"
(
  cd "$PKI"
  key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
  key ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/O=Bench/CN=Bench Revocation CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" -out ca.crt
  leaf() { # name subject extensions
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  leaf server "/CN=localhost" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
  client_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid
crlDistributionPoints=URI:$CRL_URL"
  leaf client "/O=Bench/CN=bench-client" "$client_ext"
  leaf revoked "/O=Bench/CN=bench-client" "$client_ext"   # the same subject, on the CRL
  key selfsigned.key
  openssl req -x509 -new -key selfsigned.key -sha256 -days 30 -subj "/O=Bench/CN=bench-selfsigned" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=clientAuth" -out selfsigned.crt
)
# The CRL: the revoked certificate and CRL_ENTRIES random serials, valid for a day.
"$VENV/bin/python" - "$PKI" "$ROOT_TMP/www/ca.crl" "$CRL_ENTRIES" <<'PY'
import datetime, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

pki, out, entries = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
revoked = x509.load_pem_x509_certificate((pki / "revoked.crt").read_bytes())
now = datetime.datetime.now(datetime.UTC)
builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject).last_update(now)
           .next_update(now + datetime.timedelta(days=1)).add_extension(x509.CRLNumber(1), critical=False))
for serial in [revoked.serial_number, *(x509.random_serial_number() for _ in range(entries))]:
    entry = (x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
             .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build())
    builder = builder.add_revoked_certificate(entry)
out.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
print(f"CRL: {entries + 1} entries, {out.stat().st_size} bytes")
PY
python3 -m http.server "$CRL_PORT" --bind 127.0.0.1 --directory "$ROOT_TMP/www" > "$ROOT_TMP/crl-server.log" 2>&1 &
CRL_SERVER_PID=$!

# --- the load generator (the peer's, built here: its directory is read-only) ------------------------
cc -O2 -o "$ROOT_TMP/loadgen" "$PEER_DIR/loadgen.c" -lssl -lcrypto -lpthread

# --- the two servers --------------------------------------------------------------------------------
start_side() { # side "serve options" -> PID_<side>, PORT_<side>
  TMP="$ROOT_TMP/$1"; mkdir -p "$TMP"
  OUR_PORT="$(free_port)"
  OUR_SERVE_ARGS="$2" start_ours > "$TMP/info"   # not in a pipe: start_ours sets SERVER_PID here
  sed "s/^/$1: /" "$TMP/info"
  printf -v "PID_$1" '%s' "$SERVER_PID"; printf -v "PORT_$1" '%s' "$OUR_PORT"
}
start_side A ""
start_side B "--revocation-check crl"

token() { # port cert -> HTTP status and body
  curl -s -w ' %{http_code}' --cacert "$PKI/ca.crt" --cert "$PKI/$2.crt" --key "$PKI/$2.key" \
    -d grant_type=client_credentials -d client_id=bench-pki "https://127.0.0.1:$1/token"
}
for side in A B; do
  port_var="PORT_$side"
  token "${!port_var}" client | grep -q '"access_token".* 200$' || { echo "side $side: no token" >&2; exit 1; }
done
grep -q '"event":"crl_loaded"' "$ROOT_TMP/B/authz-server.log" || { echo "B loaded no CRL" >&2; exit 1; }
token "$PORT_B" revoked | grep -q 'the client certificate has been revoked.* 401$' \
  || { echo "B does not refuse the revoked certificate: is CRL checking on?" >&2; exit 1; }
token "$PORT_A" revoked | grep -q '"access_token".* 200$' || { echo "A refuses the revoked certificate" >&2; exit 1; }
echo "sanity: both sides issue tokens; B loaded the CRL and refuses the revoked certificate, A does not check"

# --- paired measurements ----------------------------------------------------------------------------
OUT="$ROOT_TMP/results.jsonl"
: > "$OUT"
for pair in $(seq 1 "$PAIRS"); do
  if [ $((pair % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for side in $order; do
    port_var="PORT_$side"; pid_var="PID_$side"
    for try in $(seq 0 "$RETRIES"); do
      python3 "$PEER_DIR/measure.py" quiet "$QUIET_WAIT" 10 > /dev/null
      result="$(python3 "$PEER_DIR/measure.py" run "${!pid_var}" pki -- "$ROOT_TMP/loadgen" \
        -u "https://127.0.0.1:${!port_var}/token" --cert "$PKI/client.crt" --key "$PKI/client.key" \
        --cacert "$PKI/ca.crt" -b "grant_type=client_credentials&client_id=bench-pki" --expect '"access_token"' \
        -m keepalive -c "$CONNS" -d "$DURATION" -w "$WARMUP" --json | sed -n 's/^RESULT //p')"
      foreign="$(printf '%s' "$result" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["foreign_cpu_pct"]))')"
      if [ "$foreign" -le "$MAX_FOREIGN" ] || [ "$try" = "$RETRIES" ]; then break; fi
      echo "   pair $pair side $side: other processes used $foreign% of a core: measured again"
    done
    printf '%s' "$result" | python3 -c 'import json,sys; r=json.load(sys.stdin); r.update(side=sys.argv[1], pair=int(sys.argv[2])); print(json.dumps(r))' \
      "$side" "$pair" >> "$OUT"
    printf '%s' "$result" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("pair %s %s: %.0f tok/s, p99 %.2f ms, errors %s, foreign %s%% of a core" % (sys.argv[2], sys.argv[1], r["rps"], r["p99_ms"], r["errors"], r["foreign_cpu_pct"]))' \
      "$side" "$pair"
  done
done

echo
"$VENV/bin/python" "$BENCH/ab_summary.py" "$OUT" --a "CRL checking off" \
  --b "CRL checking on (--revocation-check crl, hard-fail; a CRL of $((CRL_ENTRIES + 1)) entries)"
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
pairs = {}
for row in rows:
    pairs.setdefault(row["pair"], {})[row["side"]] = row
ratios = [p["B"]["rps"] / p["A"]["rps"] for p in pairs.values() if "A" in p and "B" in p and p["A"]["rps"]]
errors = sum(int(r.get("errors") or 0) for r in rows)
ratio = statistics.median(ratios)
print(f"\nkeep-alive tokens/s, CRL checking on / off: median {ratio:.3f} over {len(ratios)} pairs "
      f"(range {min(ratios):.3f}-{max(ratios):.3f}); errors {errors}; target >= 0.9: {'PASS' if ratio >= 0.9 else 'FAIL'}")
PY
mkdir -p "$RESULTS"; cp "$OUT" "$RESULTS/revocation-$(date +%Y%m%d-%H%M%S).jsonl"
echo "B's CRL fetches: $(grep -c '"GET /ca.crl' "$ROOT_TMP/crl-server.log" || true) (kept until nextUpdate)"
