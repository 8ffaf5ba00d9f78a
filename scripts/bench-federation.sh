#!/usr/bin/env bash
# Benchmark: accepted and committed tx/s of 765-byte CREATEs for federations of 1, 2 and 3
# nodes on this machine (`cairn dev-cluster`: one nats-server + one node each, all on
# loopback), beside the raw JetStream publish rate of messages of the same size measured in
# the same run. Writes results/federation-<n>.json and appends a row to results/federation-<n>.csv.
# Usage: scripts/bench-federation.sh [COUNT] [NODE COUNTS...]   (default: 20000 1 2 3)
#        RATE=1000 scripts/bench-federation.sh 10000 4   (open loop at 1000 tx/s: latency at a
#        fixed offered rate; results in results/federation-<n>-rate<RATE>.json)
#        BIN_DIR=/path/with/cairn+loadgen LABEL=before scripts/bench-federation.sh 20000 3 4
#        (binaries of another build; results in results/federation-<n>-<LABEL>.json)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20000}
rate=${RATE:-0}
suffix=$([ "$rate" = 0 ] && echo "" || echo "-rate$rate")${LABEL:+-$LABEL}
bin=${BIN_DIR:-target/release}
shift || true
sizes=("${@:-1 2 3}")
[ -n "${BIN_DIR:-}" ] || cargo build --release -q -p cairn-node -p cairn-loadgen
mkdir -p results
for n in ${sizes[@]}; do
  dir=$(mktemp -d /tmp/cairn-bench-XXXX)
  "$bin/cairn" dev-cluster --nodes "$n" --dir "$dir/c" --base-port 29984 > "$dir/cluster.out" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do grep -q "Federation of" "$dir/cluster.out" && break; kill -0 $pid || { cat "$dir/cluster.out"; exit 1; }; sleep 0.1; done
  targets=$(seq 0 $((n - 1)) | sed 's/.*/http:\/\/127.0.0.1:$((29984 + 10 * &))/' | while read -r l; do eval echo "$l"; done | paste -sd,)
  "$bin/loadgen" --target "$targets" --count "$count" --concurrency 64 --rate "$rate" \
    --raw-jetstream "$dir/c/node0/config.toml" \
    --durability "JetStream file store, R=$(( n < 3 ? n : 3 )), 202 after a quorum ack (nats-server default sync_interval: fsync every 2 min)" \
    --out "results/federation-$n$suffix.json" > /dev/null
  kill -TERM $pid; wait $pid || true
  rm -rf "$dir"
done
tail -q -n1 $(for n in ${sizes[@]}; do echo results/federation-$n$suffix.csv; done)
