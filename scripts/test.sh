#!/usr/bin/env bash
# Installs what the tests need (Python packages in .venv, curl from Debian if missing)
# and runs lint, type checks and the whole test suite (unit + over-the-wire).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test
if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq curl
fi
.venv/bin/ruff check authz resource tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
