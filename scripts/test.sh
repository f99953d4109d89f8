#!/usr/bin/env bash
# The whole test suite: the runtime tests (unit + integration against real anvil processes)
# in .venv, then the brownie tests in brownie's own environment. Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
if [ "${SKIP_BROWNIE:-0}" != "1" ]; then
  bash scripts/brownie.sh test
fi
