#!/usr/bin/env bash
# The one test command (README "Test"): builds the release server and runs every suite against
# it, with 1 and with 2 shards. Exits non-zero if any suite fails; the last line counts suites.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

cargo build --release -p sockudo || { echo "build failed"; exit 1; }
export SOCKUDO_BIN="$ROOT/target/release/sockudo"

passed=0
failed=0
failures=()
run() {
    local name=$1
    shift
    echo
    echo "=== $name"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$name")
    fi
}

run "code shape (cargo fmt --check, clippy -D warnings, tests/structure/check.py)" \
    sh -c 'cargo fmt --all --check && cargo clippy --workspace --all-targets -- -D warnings && python3 tests/structure/check.py'
run "unit tests (server, shards, storage incl. crash and shard-count tests)" cargo test --release -p sockudo -p shards -p storage
run "loadtest (unit + smoke run of every scenario)" cargo test --release -p loadtest
run "benchmarks compile" cargo build --release -p sockudo --benches
for shards in 1 2; do
    export SOCKUDO_SHARDS=$shards
    run "e2e (shards=$shards)" cargo test --release -p e2e --no-fail-fast
    run "pusher-js + pusher (node, shards=$shards)" tests/clients/run.sh
    run "pusher (python, shards=$shards)" tests/python/run.sh
done
export SOCKUDO_SHARDS=1
run "autobahn" tests/autobahn/run.sh

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
