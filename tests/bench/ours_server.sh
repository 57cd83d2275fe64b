# Sourced first by run_token_bench.sh, run_proxy_bench.sh, profile_token.sh and ab_ours.sh: the paths and defaults
# they share, and start_ours / stop_ours for OUR server. start_ours also needs TMP and OUR_PORT,
# and runs the code in OUR_SRC (a checkout's root) when set, else the installed one. Sets
# SERVER_PID. Callers trap EXIT -> stop_ours.
# shellcheck shell=bash

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$REPO/tests/bench"
PEER_DIR="$(cd "${PEER_DIR:-$REPO/../shared/bench/peer}" && pwd)"
VENV="${VENV:-$REPO/.venv}"
RESULTS="$BENCH/results"
PKI="$PEER_DIR/pki"
LOG_LEVEL="${LOG_LEVEL:-info}"

SERVER_PID=""

# Our CLI reads AUTHZ_* from the environment: keep the caller's out of it.
_clean_env() {
  local v
  CLEAN_ENV=(env)
  while IFS= read -r v; do CLEAN_ENV+=(-u "$v"); done < <(compgen -e | grep '^AUTHZ_' || true)
}
# The CLI of OUR_SRC when set: PYTHONPATH comes before the venv's editable install, for authz
# and for authz_resource (which the CLI imports, and which imports authz).
_authz_command() {
  # -P: no current directory on sys.path, whose authz/ would win over PYTHONPATH
  if [ -n "${OUR_SRC:-}" ]; then AUTHZ_CMD=(env PYTHONPATH="$OUR_SRC:$OUR_SRC/resource" "$VENV/bin/python" -P -m authz)
  else AUTHZ_CMD=("$VENV/bin/authz"); fi
}
_authz() { _clean_env; _authz_command; "${CLEAN_ENV[@]}" "${AUTHZ_CMD[@]}" "$@"; }

# authz serve --workers 1 on 127.0.0.1:$OUR_PORT with the peer PKI, a fresh data dir under $TMP and
# the two benchmark clients; log in $TMP/authz-server.log. Returns once it answers over TLS.
# OUR_SERVE_ARGS (or OUR_EXTRA_ARGS): more `authz serve` options (split on spaces), e.g.
# "--revocation-check crl" or "--metrics-listen 127.0.0.1:9464".
# With OUR_PROXY=FORMAT (e.g. nginx): proxy mode instead, plain HTTP to a proxy on 127.0.0.1 that
# forwards the client certificate in its header; OUR_ISSUER = the proxy's public URL.
start_ours() {
  local data="$TMP/data" scheme=https
  local -a listen extra=()
  read -r -a extra <<< "${OUR_SERVE_ARGS:-${OUR_EXTRA_ARGS:-}}"
  if [ -n "${OUR_PROXY:-}" ]; then
    listen=(--proxy-cert-header "$OUR_PROXY" --trusted-proxy 127.0.0.1 --issuer "${OUR_ISSUER:?OUR_ISSUER: the URL of the proxy}")
    scheme=http
  else
    listen=(--tls-cert "$PKI/server.crt" --tls-key "$PKI/server.key")
  fi
  rm -rf "$data"; mkdir -p "$data"
  _authz clients add bench-pki --auth-method tls_client_auth \
    --subject-dn "CN=bench-client,O=Bench" --data-dir "$data" >/dev/null
  _authz clients add bench-selfsigned --auth-method self_signed_tls_client_auth \
    --cert "$PKI/selfsigned.crt" --data-dir "$data" >/dev/null
  _clean_env; _authz_command
  # A simple command (not a function) in the background, so that $! is the server process itself
  # (env execs authz): its PID is what gets signalled and whose VmHWM is read.
  "${CLEAN_ENV[@]}" "${AUTHZ_CMD[@]}" serve "${listen[@]}" \
    --trust-anchor "$PKI/ca.crt" --host 127.0.0.1 --port "$OUR_PORT" --data-dir "$data" --workers 1 \
    --log-level "$LOG_LEVEL" --log-format json "${extra[@]}" > "$TMP/authz-server.log" 2>&1 &
  SERVER_PID=$!
  wait_until_up "our server" "$SERVER_PID" "$scheme://127.0.0.1:$OUR_PORT/.well-known/oauth-authorization-server" \
    "$TMP/authz-server.log" 30 || return 1
  local code dirty=""
  if [ -n "${OUR_SRC:-}" ]; then
    code="code ${OUR_SRC_LABEL:-$OUR_SRC}"
  else
    git -C "$REPO" diff --quiet HEAD -- authz 2>/dev/null || dirty="+uncommitted changes in authz/ (diff sha1 $(git -C "$REPO" diff HEAD -- authz | sha1sum | cut -c1-10))"
    code="git $(git -C "$REPO" rev-parse --short HEAD)$dirty"
  fi
  echo "our server: authz $(_authz --version | awk '{print $NF}') $code pid $SERVER_PID port $OUR_PORT log-level $LOG_LEVEL${OUR_PROXY:+ proxy mode ($OUR_PROXY header, plain HTTP)}${OUR_EXTRA_ARGS:+ options: $OUR_EXTRA_ARGS}"
}

# wait_until_up NAME PID URL LOG SECONDS: until URL answers (over TLS: the peer PKI's CA), or the
# process exits, or SECONDS pass; the last two print the log's end and fail.
wait_until_up() {
  local name=$1 pid=$2 url=$3 log=$4 seconds=$5
  for _ in $(seq 1 $((seconds * 10))); do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "$name exited" >&2; return 1; }
    curl -s -o /dev/null --cacert "$PKI/ca.crt" "$url" && return 0
    sleep 0.1
  done
  tail -20 "$log" >&2; echo "$name did not answer within $seconds s" >&2; return 1
}

# SIGINT (uvicorn's graceful shutdown), SIGKILL after 10 s. Only the PID this script started.
stop_ours() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -INT "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
    wait "$SERVER_PID" 2>/dev/null || true
    echo "our server stopped (pid $SERVER_PID)"
  fi
  SERVER_PID=""
}

# install_bench_prerequisites [COMMAND:PACKAGE ...]: what the load generators are built with (Go,
# OpenSSL's headers) and each COMMAND missing from PATH, from Debian's packages; idempotent.
# INSTALLED_PACKAGES says what it installed (empty: nothing).
install_bench_prerequisites() {
  local need_apt=() wanted
  INSTALLED_PACKAGES=""
  command -v go >/dev/null || need_apt+=(golang-go)
  [ -f /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
  for wanted in "$@"; do command -v "${wanted%%:*}" >/dev/null || need_apt+=("${wanted#*:}"); done
  [ "${#need_apt[@]}" -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then echo "missing ${need_apt[*]}: run as root or apt-get install them" >&2; exit 1; fi
  echo "installing ${need_apt[*]}"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
  INSTALLED_PACKAGES="${need_apt[*]}"
}
