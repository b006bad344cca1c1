#!/usr/bin/env bash
# Node real-client compatibility suite (pusher-js 8 + pusher server SDK 5).
# Usage: tests/clients/run.sh [extra node --test args / test files...]
# Honours SOCKUDO_BIN (server binary) and SOCKUDO_SHARDS (shard count, default 1).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d node_modules/pusher-js ] || [ ! -d node_modules/pusher ] || [ ! -d node_modules/ws ] \
   || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== installing node deps (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

export SOCKUDO_SHARDS="${SOCKUDO_SHARDS:-1}"
REPO_ROOT=$(cd ../.. && pwd)
export SOCKUDO_BIN="${SOCKUDO_BIN:-$REPO_ROOT/target/release/sockudo}"
if [ ! -x "$SOCKUDO_BIN" ]; then
  echo "sockudo binary not found at $SOCKUDO_BIN (build with: cargo build --release -p sockudo)" >&2
  exit 1
fi
echo "== node compat suite: SOCKUDO_BIN=$SOCKUDO_BIN SOCKUDO_SHARDS=$SOCKUDO_SHARDS" >&2

files=()
args=()
for a in "$@"; do
  case "$a" in
    *.test.mjs) files+=("$a") ;;
    *) args+=("$a") ;;
  esac
done
if [ ${#files[@]} -eq 0 ]; then files=(*.test.mjs); fi

exec node --test --test-concurrency=1 --test-timeout=180000 --test-force-exit "${args[@]}" "${files[@]}"
