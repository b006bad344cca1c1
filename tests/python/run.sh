#!/usr/bin/env bash
# Python real-client compatibility suite (official `pusher` SDK, official Sockudo V2 clients
# `sockudo-python` / `sockudo-http-python`, and websocket-client).
# Usage: tests/python/run.sh [pytest args...]
# Honours SOCKUDO_BIN (server binary) and SOCKUDO_SHARDS (shard count, default 1).
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
fi

VENV=.venv
STAMP="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
  echo "== creating venv in tests/python/$VENV with $PY" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$want" > "$STAMP"
fi

export SOCKUDO_SHARDS="${SOCKUDO_SHARDS:-1}"
REPO_ROOT=$(cd ../.. && pwd)
export SOCKUDO_BIN="${SOCKUDO_BIN:-$REPO_ROOT/target/release/sockudo}"
if [ ! -x "$SOCKUDO_BIN" ]; then
  echo "sockudo binary not found at $SOCKUDO_BIN (build with: cargo build --release -p sockudo)" >&2
  exit 1
fi
echo "== python compat suite: SOCKUDO_BIN=$SOCKUDO_BIN SOCKUDO_SHARDS=$SOCKUDO_SHARDS" >&2
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$@"
