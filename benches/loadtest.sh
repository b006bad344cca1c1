#!/usr/bin/env bash
# The standard load-test scenarios (README "Benchmark"): builds release, and for each scenario
# starts a fresh server (1 shard, loopback), runs the `loadtest` harness against it, and writes
# target/bench/<scenario>-<run>.json and .html. Prints the median of RUNS runs (default 1) of the
# figures the targets are stated in.
#
#   benches/loadtest.sh                 # every scenario once
#   RUNS=3 benches/loadtest.sh churn    # three runs of one scenario
#   SERVER=/path/to/sockudo benches/loadtest.sh   # the same scenarios against another build
#   HISTORY_ENABLED=false benches/loadtest.sh fanout-100   # server settings pass through the env
# fanout-100-v2 and light-v2 are the same loads with Protocol V2 subscribers (serials, stream
# ids, the V2 envelope); with history on (the default) every message is also stored.
# big-fanout-v2 is big-fanout with V2 subscribers; big-fanout-f1/-f10/-f100 the same with 1, 10
# or 100 distinct subscription filters over the 10,000 sockets, which every event passes (so
# the delivered frames are the same and CPU per frame compares directly).
# ticker is 1000 V2 subscribers over 10 channels at 1000 publishes/s (200-byte messages that
# differ in their timestamp); ticker-fossil and ticker-xdelta3 the same with every subscription
# asking for deltas ("frame bytes" in the report: WebSocket payload per delivered frame).
# fanout-100-msgpack and fanout-100-protobuf are fanout-100-v2 with every socket on a binary
# wire format (each message re-encoded once per format on the shard, the frame shared).
# connect-v2 is connect with V2 sockets; connect-token the same with every socket presenting a
# capability token (?token=), so the difference is the token check's cost per connect.
# appends-1 and appends-100 stream mutable-message appends (4-byte tokens) from 4 HTTP writers
# to 100 V2 subscribers, into 1 message (all writers on it) or 100 (25 per writer); the -ai
# variants do it on an AI channel (private-ai-…), whose appends the server rolls up
# (AI_TRANSPORT_ROLLUP_DEFAULT_WINDOW_MS=0 turns that off).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1}
OUT=target/bench
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release -p sockudo -p loadtest
SERVER=${SERVER:-target/release/sockudo}  # SERVER=path/to/other/sockudo compares another build
LOADTEST=target/release/loadtest

declare -A ARGS=(
    [big-fanout]="fanout --sockets 10000 --channels 1 --rate 50 --duration 10"
    [fanout-100]="fanout --sockets 2000 --channels 20 --rate 2000 --duration 10"
    [light]="fanout --sockets 2000 --channels 20 --rate 200 --duration 10"
    [fanout-100-v2]="fanout --sockets 2000 --channels 20 --rate 2000 --duration 10 --protocol 2"
    [fanout-100-msgpack]="fanout --sockets 2000 --channels 20 --rate 2000 --duration 10 --protocol 2 --format msgpack"
    [fanout-100-protobuf]="fanout --sockets 2000 --channels 20 --rate 2000 --duration 10 --protocol 2 --format protobuf"
    [light-v2]="fanout --sockets 2000 --channels 20 --rate 200 --duration 10 --protocol 2"
    [big-fanout-v2]="fanout --sockets 10000 --channels 1 --rate 50 --duration 10 --protocol 2"
    [big-fanout-f1]="fanout --sockets 10000 --channels 1 --rate 50 --duration 10 --protocol 2 --filters 1"
    [big-fanout-f10]="fanout --sockets 10000 --channels 1 --rate 50 --duration 10 --protocol 2 --filters 10"
    [big-fanout-f100]="fanout --sockets 10000 --channels 1 --rate 50 --duration 10 --protocol 2 --filters 100"
    [ticker]="fanout --sockets 1000 --channels 10 --rate 1000 --duration 10 --protocol 2"
    [ticker-fossil]="fanout --sockets 1000 --channels 10 --rate 1000 --duration 10 --protocol 2 --delta fossil"
    [ticker-xdelta3]="fanout --sockets 1000 --channels 10 --rate 1000 --duration 10 --protocol 2 --delta xdelta3"
    [connect]="connect --sockets 10000 --hold 5"
    [connect-v2]="connect --sockets 10000 --hold 5 --protocol 2"
    [connect-token]="connect --sockets 10000 --hold 5 --protocol 2 --token"
    [churn]="churn --rate 2000 --duration 10"
    [presence]="presence --sockets 1000 --channels 10"
    [appends-1]="appends --subscribers 100 --messages 1 --writers 4 --duration 10"
    [appends-100]="appends --subscribers 100 --messages 100 --writers 4 --duration 10"
    [appends-1-ai]="appends --subscribers 100 --messages 1 --writers 4 --duration 10 --channel-prefix private-ai-lt-"
    [appends-100-ai]="appends --subscribers 100 --messages 100 --writers 4 --duration 10 --channel-prefix private-ai-lt-"
)
ORDER=(big-fanout fanout-100 light connect churn presence)
[ $# -gt 0 ] && ORDER=("$@")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for name in "${ORDER[@]}"; do
    [ -n "${ARGS[$name]:-}" ] || { echo "unknown scenario $name (one of: ${!ARGS[*]})"; exit 2; }
    for run in $(seq 1 "$RUNS"); do
        port=$(free_port)
        rm -rf "$OUT/$name-$run.data"
        $SERVER --host 127.0.0.1 --port "$port" --metrics-port "$(free_port)" --shards 1 \
            --data-dir "$OUT/$name-$run.data" >"$OUT/$name-$run.server.log" 2>&1 &
        pid=$!
        until (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; do sleep 0.1; done
        echo "=== $name run $run: loadtest ${ARGS[$name]}"
        # shellcheck disable=SC2086
        $LOADTEST ${ARGS[$name]} --port "$port" --server-pid "$pid" --quiet \
            --json "$OUT/$name-$run.json" --html "$OUT/$name-$run.html" || echo "(run reported a failure)"
        # The server gives memory back within its 1 s sweep once the sockets have gone.
        sleep 3
        awk '/VmRSS/ {print $2}' "/proc/$pid/status" >"$OUT/$name-$run.rss-after-close"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done

python3 - "$OUT" "$RUNS" "${ORDER[@]}" <<'EOF'
import json, statistics, sys
out, runs, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")
print(f"\nmedians of {runs} run(s); reports in {out}/")
for name in names:
    recs = [json.load(open(f"{out}/{name}-{r}.json")) for r in range(1, runs + 1)]
    m = lambda k: med([r["metrics"].get(k) for r in recs])
    lat = lambda q: med([next(iter(r["latency"].values()), {}).get(q) for r in recs])
    ok = all(r["passed"] for r in recs)
    if recs[0]["scenario"] == "fanout":
        print(f"{name:11} server {m('server_cpu_us_per_delivery'):.2f} us/delivered frame, "
              f"delivered {m('deliveries_received'):.0f}/{m('deliveries_expected'):.0f}, "
              f"accepted {m('accepted_rate'):.0f}/{m('requested_rate'):.0f} publishes/s, "
              f"p50 {lat('p50_us')/1000:.2f} ms p99 {lat('p99_us')/1000:.2f} ms, "
              f"{m('bytes_per_frame'):.1f} B/frame, passed={ok}")
    elif recs[0]["scenario"] == "connect":
        after = med([int(open(f"{out}/{name}-{r}.rss-after-close").read()) for r in range(1, runs + 1)])
        print(f"{name:11} {m('server_rss_bytes_per_connection')/1024:.2f} KiB RSS per idle connection, "
              f"{m('server_cpu_us_per_connection'):.1f} us server CPU per connection, "
              f"RSS {m('server_rss_kb_before')/1024:.1f} MiB before, {m('server_rss_kb_connected')/1024:.1f} connected, "
              f"{after/1024:.1f} 3 s after close, passed={ok}")
    elif recs[0]["scenario"] == "churn":
        print(f"{name:11} {m('server_cpu_us_per_cycle'):.1f} us server CPU per cycle, "
              f"{m('cycles_ok'):.0f} cycles ok, {m('cycles_failed'):.0f} failed, passed={ok}")
    elif recs[0]["scenario"] == "appends":
        print(f"{name:11} {m('appends_per_s_median'):.0f} appends/s accepted (median), "
              f"append->receipt p50 {lat('p50_us')/1000:.2f} ms p99 {lat('p99_us')/1000:.2f} ms, "
              f"server {m('server_cpu_us_per_append'):.1f} us/append {m('server_cpu_us_per_delivery'):.2f} us/frame, "
              f"{m('wire_bytes_per_token_per_subscriber'):.1f} B/token/subscriber, "
              f"delivered {m('deliveries_received'):.0f}/{m('deliveries_expected'):.0f}, passed={ok}")
    else:
        print(f"{name:11} passed={ok}; see {out}/{name}-*.json")
EOF
