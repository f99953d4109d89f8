#!/usr/bin/env bash
# Installs everything the project needs, from scratch, idempotently:
#   node_modules/   solcjs, OpenZeppelin contracts, anvil (npm ci, from package-lock.json)
#   .venv/          the runtime: ledger, gateway, tests (pinned in requirements.lock.txt)
#   .venv-brownie/  eth-brownie, which pins its own dependencies (requirements-brownie.lock.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x node_modules/.bin/solcjs ] || [ ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ]; then
  npm ci --no-audit --no-fund
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "setuptools>=70.1" wheel
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .

if [ "${SKIP_BROWNIE:-0}" != "1" ]; then
  if [ ! -x .venv-brownie/bin/brownie ]; then
    "$PYTHON" -m venv .venv-brownie
  fi
  .venv-brownie/bin/python -m pip install -q --disable-pip-version-check -r requirements-brownie.lock.txt
fi
echo "setup: done"
