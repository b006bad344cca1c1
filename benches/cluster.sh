#!/usr/bin/env bash
# Several nodes over Redis against one node (README "Run several nodes", tuning.md "Several
# nodes"): the same fanout load, subscribers spread over the nodes, every HTTP publish to the
# first node. For each rate in RATES and each run: a fresh redis-server, fresh nodes (1 shard
# each, node i pinned to CPU i mod the CPU count), the loadtest harness; then the medians of
# RUNS runs: deliveries/s, p50/p99 publish-to-receipt, and the CPU the nodes' Redis threads
# (redis-writer, redis-reader-*) and redis-server(s) spent per cluster-log entry. MODES picks
# what runs: `one` (one node), `cluster` (NODES nodes over one Redis), `sharded` (NODES nodes
# over a Redis Cluster of three masters, the log in its default 8 parts).
# SCENARIO=appends runs mutable-message appends instead (300 V2 subscribers spread over the
# nodes, 100 messages, 4 HTTP writers on the first node each sending its next append as soon
# as the previous one is answered; RATES is then only a label): appends/s, append-to-receipt
# latency and the Redis CPU per appended entry.
#
#   benches/cluster.sh                          # RUNS=1, RATES="1000 2000 4000", NODES=3
#   RUNS=3 RATES="2000" benches/cluster.sh
#   MODES="cluster sharded" RATES=1000 benches/cluster.sh
#   SCENARIO=appends RUNS=3 RATES=0 MODES="one cluster" benches/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1}
RATES=${RATES:-"1000 2000 4000"}
NODES=${NODES:-3}
MODES=${MODES:-"one cluster"}
SOCKETS=${SOCKETS:-3000}
SCENARIO=${SCENARIO:-fanout}
OUT=target/bench
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v redis-server >/dev/null || { echo "redis-server not found (apt-get install redis-server)"; exit 2; }

cargo build --release -p sockudo -p loadtest
SERVER=${SERVER:-target/release/sockudo}
LOADTEST=target/release/loadtest
CPUS=$(nproc)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { until (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; do sleep 0.1; done; }
# CPU ticks (utime + stime) of the threads of $1 whose name starts with $2.
thread_ticks() {
    local total=0 t
    for t in /proc/"$1"/task/*; do
        case "$(cat "$t/comm" 2>/dev/null)" in "$2"*) total=$((total + $(awk '{print $14 + $15}' "$t/stat"))) ;; esac
    done
    echo "$total"
}
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for rate in $RATES; do
    for mode in $MODES; do
        for run in $(seq 1 "$RUNS"); do
            name="cluster-$SCENARIO-$mode-$rate-$run"
            n=1
            env=()
            redis_pids=()
            if [ "$mode" = cluster ]; then
                n=$NODES
                rport=$(free_port)
                redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/$name.redis.log" 2>&1 &
                redis_pids+=($!)
                wait_port "$rport"
                env=(ADAPTER_DRIVER=redis REDIS_URL="redis://127.0.0.1:$rport")
            elif [ "$mode" = sharded ]; then
                n=$NODES
                addrs=()
                for m in 0 1 2; do
                    rport=$(free_port)
                    rdir="$OUT/$name.redis-$m"
                    rm -rf "$rdir" && mkdir -p "$rdir"
                    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$rdir" \
                        --cluster-enabled yes --cluster-port "$(free_port)" >"$rdir/log" 2>&1 &
                    redis_pids+=($!)
                    wait_port "$rport"
                    addrs+=("127.0.0.1:$rport")
                done
                redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$OUT/$name.create.log"
                for a in "${addrs[@]}"; do
                    until redis-cli -p "${a#*:}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
                done
                env=(ADAPTER_DRIVER=redis-cluster REDIS_CLUSTER_NODES="$(printf 'redis://%s,' "${addrs[@]}")")
            fi
            ports=()
            pids=()
            for i in $(seq 0 $((n - 1))); do
                port=$(free_port)
                rm -rf "$OUT/$name-$i.data"
                env "${env[@]}" taskset -c $((i % CPUS)) "$SERVER" --host 127.0.0.1 --port "$port" \
                    --metrics-port "$(free_port)" --shards 1 --data-dir "$OUT/$name-$i.data" \
                    >"$OUT/$name-$i.server.log" 2>&1 &
                pids+=($!)
                ports+=("$port")
                wait_port "$port"
            done
            if [ "$mode" != one ]; then
                for port in "${ports[@]}"; do
                    until curl -s -o /dev/null -D - "http://127.0.0.1:$port/up" | grep -qi "x-backplane: connected"; do sleep 0.1; done
                done
            fi
            socket_ports=$(IFS=,; echo "${ports[*]}")
            before_threads=0; before_redis=0
            for p in "${pids[@]}"; do before_threads=$((before_threads + $(thread_ticks "$p" redis-))); done
            for p in "${redis_pids[@]}"; do before_redis=$((before_redis + $(proc_ticks "$p"))); done
            if [ "$SCENARIO" = appends ]; then
                load=(appends --subscribers 300 --messages 100 --writers 4 --duration 10)
            else
                load=(fanout --sockets "$SOCKETS" --channels 20 --rate "$rate" --duration 10 --protocol 2)
            fi
            echo "=== $name: ${load[*]} over ports $socket_ports"
            $LOADTEST "${load[@]}" --port "${ports[0]}" --socket-ports "$socket_ports" --quiet \
                --json "$OUT/$name.json" --html "$OUT/$name.html" || echo "(run reported a failure)"
            after_threads=0; after_redis=0
            for p in "${pids[@]}"; do after_threads=$((after_threads + $(thread_ticks "$p" redis-))); done
            for p in "${redis_pids[@]}"; do after_redis=$((after_redis + $(proc_ticks "$p"))); done
            echo "$((after_threads - before_threads)) $((after_redis - before_redis)) $(getconf CLK_TCK)" >"$OUT/$name.ticks"
            for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
            for p in "${redis_pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
        done
    done
done

python3 - "$OUT" "$RUNS" "$NODES" "$MODES" "$SCENARIO" $RATES <<'EOF'
import json, statistics, sys
out, runs, nodes, modes, scenario = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(), sys.argv[5]
rates = sys.argv[6:]
med = lambda xs: statistics.median(xs)
print(f"\nmedians of {runs} run(s); reports in {out}/cluster-{scenario}-*.json")
for rate in rates:
    for mode in modes:
        base = f"{out}/cluster-{scenario}-{mode}-{rate}"
        recs = [json.load(open(f"{base}-{r}.json")) for r in range(1, runs + 1)]
        m = lambda k: med([r["metrics"][k] for r in recs])
        lat = lambda q: med([next(iter(r["latency"].values()), {}).get(q, float("nan")) for r in recs])
        label = {"one": "1 node", "cluster": f"{nodes} nodes, Redis", "sharded": f"{nodes} nodes, Redis Cluster"}[mode]
        if scenario == "appends":
            line = (f"{label}: {m('appends_per_s_median'):.0f} appends/s accepted, "
                    f"append->receipt p50 {lat('p50_us')/1000:.2f} ms p99 {lat('p99_us')/1000:.2f} ms, "
                    f"delivered {m('deliveries_received'):.0f}/{m('deliveries_expected'):.0f}, "
                    f"passed={all(r['passed'] for r in recs)}")
        else:
            line = (f"rate {rate:>5}/s {label}: delivered {m('deliveries_received')/10:.0f}/s "
                    f"({m('deliveries_received'):.0f}/{m('deliveries_expected'):.0f}), accepted {m('accepted_rate'):.0f}/s, "
                    f"p50 {lat('p50_us')/1000:.2f} ms p99 {lat('p99_us')/1000:.2f} ms")
        if mode != "one":
            ticks = [list(map(int, open(f"{base}-{r}.ticks").read().split())) for r in range(1, runs + 1)]
            # Every node reads every entry; each entry was appended once.
            entries = m("appends_accepted" if scenario == "appends" else "events_accepted")
            thr = med([t[0] / t[2] * 1e6 / max(entries * nodes, 1) for t in ticks])
            red = med([t[1] / t[2] * 1e6 / max(entries, 1) for t in ticks])
            line += f", Redis threads {thr:.1f} us per entry per node, redis-server(s) {red:.1f} us per entry"
        print(line)
EOF
