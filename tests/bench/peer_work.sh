# Sourced by run_store_bench.sh and bench_resumption.sh: prepare_peer copies the peer harness from
# PEER_DIR (read-only) into PEER_WORK, where npm, the PKI script and the compilers write, and builds
# there what is missing: node_modules, pki/, loadgen (C) and loadgen-go-bin (Go, if go is installed).
# Files are refreshed when they differ. Needs PEER_DIR and PEER_WORK.
# shellcheck shell=bash

prepare_peer() {
  local f
  mkdir -p "$PEER_WORK/loadgen-go"
  for f in loadgen.c make-pki.sh measure.py oidc-provider-server.mjs package.json package-lock.json \
           loadgen-go/main.go loadgen-go/go.mod; do
    if ! cmp -s "$PEER_DIR/$f" "$PEER_WORK/$f"; then
      cp "$PEER_DIR/$f" "$PEER_WORK/$f"; chmod u+w "$PEER_WORK/$f"
    fi
  done
  (
    cd "$PEER_WORK"
    if [ ! -d node_modules/oidc-provider ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
      npm ci --no-audit --no-fund --silent
    fi
    [ -f pki/client.crt ] || bash make-pki.sh > /dev/null
    if [ ! -x loadgen ] || [ loadgen.c -nt loadgen ]; then cc -O2 -o loadgen loadgen.c -lssl -lcrypto -lpthread; fi
    if command -v go >/dev/null && { [ ! -x loadgen-go-bin ] || [ loadgen-go/main.go -nt loadgen-go-bin ]; }; then
      (cd loadgen-go && GOFLAGS=-mod=mod GOPROXY=off go build -o ../loadgen-go-bin .)
    fi
  )
}
