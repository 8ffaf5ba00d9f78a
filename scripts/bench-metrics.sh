#!/usr/bin/env bash
# Committed tx/s of one node with StatsD metrics off (statsd.rate = 0) and on (the default
# rate 0.01, sent to a UDP listener standing in for Telegraf), interleaved off/on ROUNDS times,
# each run on a fresh node: the cost of metrics, measured in one session on one machine.
#   ROUNDS=2 COUNT=30000 bash scripts/bench-metrics.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cargo-target.sh
rounds=${ROUNDS:-2}
count=${COUNT:-30000}
port=${PORT:-29984}
cargo build --release -q -p cairn-node -p cairn-loadgen
release=$(cargo_target_dir)/release
mkdir -p results/bench-metrics
out=results/bench-metrics/runs.csv
echo "round,metrics,count,accepted_tps,committed_tps,raw_verify_per_s,datagrams" > "$out"
sink_port=$((port + 3))
for round in $(seq "$rounds"); do
  for mode in off on; do
    dir=$(mktemp -d)
    rate=0; [ "$mode" = on ] && rate=0.01
    # The Telegraf stand-in: counts datagrams until told to stop.
    python3 -c "
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', $sink_port)); s.settimeout(1.0)
n = 0
while True:
    try:
        s.recv(65536); n += 1
    except socket.timeout:
        try:
            open('$dir/stop').close(); break
        except FileNotFoundError:
            pass
print(n, file=open('$dir/datagrams', 'w'))
" &
    sink=$!
    CAIRN_CONFIG=$dir/config.toml "$release/cairn" configure -y > /dev/null
    CAIRN_CONFIG=$dir/config.toml CAIRN_WSSERVER_ADVERTISED_PORT=$((port + 1)) CAIRN_STATSD_HOST=127.0.0.1 CAIRN_STATSD_PORT=$sink_port CAIRN_STATSD_RATE=$rate \
      "$release/cairn" start --data-dir "$dir/data" --bind "127.0.0.1:$port" --ws-bind "127.0.0.1:$((port + 1))" > "$dir/node.log" 2>&1 &
    node=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    "$release/loadgen" --target "http://127.0.0.1:$port" --count "$count" --concurrency 64 --out "$dir/run.json" > /dev/null
    kill -TERM "$node"; wait "$node" || true
    touch "$dir/stop"; wait "$sink" || true
    python3 -c "
import json; r = json.load(open('$dir/run.json'))
print(','.join(str(x) for x in [$round, '$mode', $count, round(r['accepted']['tx_per_s']), round(r['committed']['tx_per_s']), round(r['raw_ed25519_verify_per_s_all_cores']), open('$dir/datagrams').read().strip()]))" >> "$out"
    tail -1 "$out"
    rm -rf "$dir"
  done
done
python3 - "$out" <<'PY'
import csv, sys, statistics
rows = list(csv.DictReader(open(sys.argv[1])))
mean = {m: statistics.mean(float(r["committed_tps"]) for r in rows if r["metrics"] == m) for m in ("off", "on")}
print(f"committed tx/s, mean of {len(rows)//2} runs each: metrics off {mean['off']:.0f}, on {mean['on']:.0f} ({(mean['on']/mean['off']-1)*100:+.1f} %)")
PY
