#!/usr/bin/env bash
# Quick start: install, create a development PKI and two demo clients in .authz-dev/,
# and run the server on https://127.0.0.1:8443 with the embedded store (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/authz dev --dir .authz-dev --port "${PORT:-8443}" "$@"
