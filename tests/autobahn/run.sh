#!/usr/bin/env bash
# Autobahn|Testsuite (fuzzingclient) conformance run of sockudo's WebSocket
# layer against RFC 6455.
#
# Starts `$SOCKUDO_BIN --test-hooks` on free loopback ports and runs wstest
# cases 1-7 and 9 (12/13 are permessage-deflate, which is out of scope) against
# ws://127.0.0.1:PORT/test/echo, then summarises reports/index.json.
#
# Env:
#   SOCKUDO_BIN        server binary (default: <repo>/target/release/sockudo)
#   SOCKUDO_SHARDS     --shards value (default: 1)
#   AUTOBAHN_CASES     comma-separated case patterns (default: 1.*,...,7.*,9.*)
#   AUTOBAHN_TIMEOUT   hard limit in seconds for the wstest run (default: 900)
#   AUTOBAHN_PYTHON27  path to a CPython 2.7 interpreter (default: auto-detect)
#
# Exit: 0 all cases passed (or visibly SKIPPED: no Python 2.7),
#       1 at least one case failed (or the run timed out / server died),
#       2 harness setup error (install, server start).
#
# Python deps are pip-installed once into tests/autobahn/.venv27 (gitignored);
# reports go to tests/autobahn/reports/ (gitignored, wiped on each run).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SOCKUDO_BIN="${SOCKUDO_BIN:-$ROOT/target/release/sockudo}"
SHARDS="${SOCKUDO_SHARDS:-1}"
CASES="${AUTOBAHN_CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*}"
RUN_TIMEOUT="${AUTOBAHN_TIMEOUT:-900}"
CACHE="$HERE/.venv27"
REPORTS="$HERE/reports"
AGENT="sockudo"

log() { echo "autobahn: $*"; }
die() { echo "autobahn: ERROR: $*" >&2; exit 2; }

# ---------------------------------------------------------------- Python 2.7
is_py27() {
    [ -n "$1" ] && [ -x "$1" ] &&
        "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' >/dev/null 2>&1
}

find_py27() {
    local c pyroot=""
    pyroot="$(pyenv root 2>/dev/null || true)"
    for c in "${AUTOBAHN_PYTHON27:-}" \
        ${pyroot:+"$pyroot"/versions/2.7*/bin/python} \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python \
        /root/.pyenv/versions/2.7*/bin/python \
        "$(command -v python2.7 2>/dev/null || true)" \
        "$(command -v python2 2>/dev/null || true)"; do
        if is_py27 "$c"; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

if ! PY27="$(find_py27)"; then
    echo "SKIPPED: no Python 2.7, Autobahn not run"
    exit 0
fi

# Host-side helper interpreter (ports, HTTP probes, report summary).
if command -v python3 >/dev/null 2>&1; then HOSTPY="$(command -v python3)"; else HOSTPY="$PY27"; fi

# ------------------------------------------------------------ wstest install
install_stamp() {
    {
        echo "$PY27"
        cat "$HERE/requirements-py27.txt" "$HERE/requirements-py27-accel.txt"
    } | cksum | cut -d' ' -f1
}

py27_import_ok() {
    PYTHONWARNINGS=ignore "$PY27" -c "import site, sys; site.addsitedir(sys.argv[1]); \
import zope.interface, twisted, autobahn, autobahntestsuite.wstest" "$CACHE" >/dev/null 2>&1
}

STAMP="$(install_stamp)"
if [ "$(cat "$CACHE/.installed" 2>/dev/null || true)" != "$STAMP" ] || ! py27_import_ok; then
    log "installing autobahntestsuite for $PY27 into $CACHE (one-time)"
    # Install in place; the stamp is written last, so an interrupted or failed
    # install is redone from scratch next time.
    rm -rf "$CACHE"
    mkdir -p "$CACHE"
    pip_log="$CACHE/pip-install.log"
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY27" -m pip install --no-deps --no-warn-script-location \
        --target "$CACHE" -r "$HERE/requirements-py27.txt" >"$pip_log" 2>&1; then
        tail -n 30 "$pip_log" >&2
        die "pip install of autobahntestsuite failed (full log: $pip_log)"
    fi
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY27" -m pip install --no-deps --no-warn-script-location \
        --target "$CACHE" -r "$HERE/requirements-py27-accel.txt" >>"$pip_log" 2>&1; then
        log "WARNING: wsaccel/ujson accelerators failed to build; section 9 will be slower"
    fi
    echo "$STAMP" >"$CACHE/.installed"
    py27_import_ok || die "autobahntestsuite installed but does not import (see $pip_log)"
fi

WSTEST=(env PYTHONWARNINGS=ignore "$PY27" -c "import site, sys; site.addsitedir(sys.argv.pop(1)); \
sys.argv[0] = 'wstest'; from autobahntestsuite.wstest import run; run()" "$CACHE")

# ------------------------------------------------------------------ server
[ -x "$SOCKUDO_BIN" ] || die "server binary not found or not executable: $SOCKUDO_BIN (cargo build --release)"

rm -rf "$REPORTS"
mkdir -p "$REPORTS"

read -r PORT METRICS_PORT < <("$HOSTPY" -c '
import socket
a = socket.socket(); a.bind(("127.0.0.1", 0))
b = socket.socket(); b.bind(("127.0.0.1", 0))
print("%d %d" % (a.getsockname()[1], b.getsockname()[1]))
')

SERVER_LOG="$REPORTS/sockudo.log"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -n "${DATA_DIR:-}" ]; then rm -rf "$DATA_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DATA_DIR="$(mktemp -d)"
log "starting $SOCKUDO_BIN on 127.0.0.1:$PORT (metrics $METRICS_PORT, shards $SHARDS)"
"$SOCKUDO_BIN" --host 127.0.0.1 --port "$PORT" --metrics-port "$METRICS_PORT" \
    --shards "$SHARDS" --data-dir "$DATA_DIR" --test-hooks >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

server_died() {
    echo "autobahn: server (pid $SERVER_PID) $1; last log lines ($SERVER_LOG):" >&2
    tail -n 40 "$SERVER_LOG" >&2 || true
}

ready=0
for _ in $(seq 300); do # ~30 s
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        server_died "exited during startup"
        exit 2
    fi
    if "$HOSTPY" -c '
import sys
try:
    from urllib.request import urlopen
except ImportError:
    from urllib2 import urlopen
try:
    sys.exit(0 if urlopen(sys.argv[1], timeout=1).getcode() == 200 else 1)
except Exception:
    sys.exit(1)
' "http://127.0.0.1:$PORT/up" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.1
done
[ "$ready" = 1 ] || { server_died "did not answer GET /up with 200 within 30 s"; exit 2; }

# Preflight: the echo route must upgrade (catches a binary without --test-hooks).
if ! "$HOSTPY" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"GET /test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
          b"Sec-WebSocket-Version: 13\r\n\r\n")
line = s.recv(4096).split(b"\r\n", 1)[0]
sys.stderr.write("status line: %r\n" % line)
sys.exit(0 if b" 101 " in line + b" " else 1)
' "$PORT" 2>"$REPORTS/preflight.log"; then
    cat "$REPORTS/preflight.log" >&2
    die "ws://127.0.0.1:$PORT/test/echo did not answer the upgrade with 101 (is --test-hooks supported?)"
fi

# ------------------------------------------------------------------ fuzzing
SPEC="$REPORTS/fuzzingclient.json"
"$HOSTPY" -c '
import json, sys
outdir, url, agent, cases = sys.argv[1:5]
json.dump({
    "outdir": outdir,
    "servers": [{"agent": agent, "url": url, "options": {"version": 18}}],
    "cases": [c.strip() for c in cases.split(",") if c.strip()],
    "exclude-cases": ["12.*", "13.*"],
    "exclude-agent-cases": {},
}, open(sys.argv[5], "w"), indent=2)
' "$REPORTS" "ws://127.0.0.1:$PORT/test/echo" "$AGENT" "$CASES" "$SPEC"

WSTEST_LOG="$REPORTS/wstest.log"
log "running wstest fuzzingclient, cases $CASES (limit ${RUN_TIMEOUT}s, log $WSTEST_LOG)"
start=$(date +%s)
set +e
(cd "$REPORTS" && timeout -k 10 "$RUN_TIMEOUT" "${WSTEST[@]}" -m fuzzingclient -s "$SPEC") >"$WSTEST_LOG" 2>&1
rc=$?
set -e
elapsed=$(($(date +%s) - start))
log "wstest finished in ${elapsed}s (exit $rc)"

status=0
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "autobahn: FAILED: wstest did not finish within ${RUN_TIMEOUT}s; last cases started:"
    grep -o 'Running test case ID [^ ]*' "$WSTEST_LOG" | tail -n 3 | sed 's/^/  /'
    status=1
elif [ "$rc" != 0 ]; then
    echo "autobahn: WARNING: wstest exited with $rc; tail of $WSTEST_LOG:"
    tail -n 20 "$WSTEST_LOG"
fi

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    server_died "died during the run"
    status=1
fi

set +e
planned="$(sed -n 's/^Ok, will run \([0-9][0-9]*\) test cases.*/\1/p' "$WSTEST_LOG" | head -n 1)"
"$HOSTPY" "$HERE/summarize.py" "$REPORTS" "$AGENT" "$planned"
src=$?
set -e
[ "$src" = 0 ] || status=1
[ -f "$REPORTS/index.html" ] && log "reports: $REPORTS/index.html"
exit "$status"
